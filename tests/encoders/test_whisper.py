import re

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperModel

from wakeword.encoders import build_encoder
from wakeword.encoders.whisper import EncoderLoadError, build_transcriber, build_whisper_encoder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=24,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        max_source_positions=1500,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    path = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(path)
    return path


def test_local_folder_loads_offline_and_matches_hf_encoder(tiny_dir):
    encoder = build_encoder(str(tiny_dir))
    assert encoder.dim == 24 and len(encoder.layers) == 2
    audio = torch.randn(1, 30 * 16000) * 0.1
    from wakeword.features import log_mel

    reference = WhisperModel.from_pretrained(tiny_dir).eval().encoder(log_mel(audio)).last_hidden_state
    torch.testing.assert_close(encoder(audio), reference, atol=1e-5, rtol=1e-4)  # 30 s: HF runs it too


def test_short_windows_give_frames_at_50_per_second(tiny_dir):
    frames = build_encoder(str(tiny_dir))(torch.randn(3, 24000) * 0.1)
    assert frames.shape == (3, 75, 24)


def test_unknown_hub_id_offline_names_the_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderLoadError, match=r"whisper-tiny\.en"):
        build_whisper_encoder("openai/whisper-nonexistent-model")


def test_freeze_strategies(tiny_dir):
    encoder = build_encoder(str(tiny_dir))
    encoder.set_trainable("top-k", 1)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.1." in n or "encoder.layer_norm" in n for n in trainable)
    encoder.set_trainable("full")
    assert not encoder.encoder.embed_positions.weight.requires_grad  # Whisper's positions stay frozen
    with pytest.raises(ValueError, match="top_k"):
        encoder.set_trainable("top-k", 5)


@pytest.mark.slow
def test_bundled_tiny_en_converts_once_and_transcribes_tts(wakeword_cache, tts):
    audio = tts("open the door please", accent="en-US", speed=0.85)
    text = build_transcriber()(audio)
    assert re.sub(r"[^a-z ]", "", text.lower()).split() == ["open", "the", "door", "please"], text
    converted = wakeword_cache / "whisper-tiny.en-transformers"
    assert (converted / "model.safetensors").exists()
    stamp = (converted / "model.safetensors").stat().st_mtime
    encoder = build_encoder("whisper-tiny.en")  # cache hit: no second conversion
    assert (converted / "model.safetensors").stat().st_mtime == stamp
    assert encoder.dim == 384 and encoder(torch.from_numpy(np.pad(audio, (0, 24000))[None, :24000])).shape == (
        1,
        75,
        384,
    )
    assert np.isfinite(audio).all()
