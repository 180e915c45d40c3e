import pytest
from transformers import WhisperConfig, WhisperModel


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A randomly initialised, very small Whisper saved locally with save_pretrained (no network)."""
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=3,
        encoder_attention_heads=2,
        decoder_layers=1,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    path = tmp_path_factory.mktemp("tiny-whisper")
    WhisperModel(config).save_pretrained(path)
    return path
