from pathlib import Path

import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

# Token ids of the tiny model: 76 words, then Whisper's special tokens
END, START, NO_TIMESTAMPS = 76, 77, 78


@pytest.fixture(scope="session")
def wakeword_cache(tmp_path_factory):
    """One converted copy of the bundled Whisper per test session, in a temp cache dir."""
    path = tmp_path_factory.mktemp("wakeword-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("WAKEWORD_CACHE_DIR", str(path))
    yield path
    patcher.undo()


def _tokenizer(path: Path) -> None:
    """A real (word-level) tokenizer.json with Whisper's special tokens at the ids the config names."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(END)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"])
    tokenizer.save(str(path))


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> tuple[WhisperForConditionalGeneration, Path]:
    """A tiny random transformers Whisper saved locally (root/hf) and ctranslate2's own conversion of it
    (root/ct2, float32, with a tokenizer.json as faster-whisper folders have)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    root = tmp_path_factory.mktemp("tiny-whisper")
    config = WhisperConfig(
        vocab_size=80,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=24,
        pad_token_id=END,
        bos_token_id=END,
        eos_token_id=END,
        decoder_start_token_id=START,
        suppress_tokens=[3, 4],
        begin_suppress_tokens=[5, END],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random biases everywhere but K (Whisper has no K bias), so mixing them up shows
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_()
    model.save_pretrained(root / "hf")
    converter = ctranslate2.converters.TransformersConverter(str(root / "hf"), load_as_float16=False)
    converter.convert(str(root / "ct2"), quantization="float32")
    _tokenizer(root / "ct2" / "tokenizer.json")
    return model, root
