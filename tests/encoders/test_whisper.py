import re

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration, WhisperModel

from wakeword.encoders import Encoder, build_encoder
from wakeword.encoders.whisper import (
    EncoderLoadError,
    build_transcriber,
    build_whisper_encoder,
    convert_ct2_whisper,
    converted_dir,
)
from wakeword.features import log_mel


@pytest.fixture(scope="module")
def tiny_dir(tiny_whisper_dir):
    """The shared tiny random Whisper (tests/conftest.py): d_model 32, 3 encoder layers."""
    return tiny_whisper_dir


def test_local_folder_loads_offline_and_matches_hf_encoder(tiny_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = build_encoder(str(tiny_dir))
    assert isinstance(encoder, Encoder) and encoder.dim == 32 and len(encoder.layers) == 3
    assert not hasattr(encoder.encoder, "decoder") and not any("decoder" in n for n, _ in encoder.named_parameters())
    audio = torch.randn(1, 30 * 16000) * 0.1
    reference = WhisperModel.from_pretrained(tiny_dir).eval().encoder(log_mel(audio)).last_hidden_state
    torch.testing.assert_close(encoder(audio), reference, atol=1e-5, rtol=1e-4)  # 30 s: HF runs it too


def test_short_windows_give_frames_at_50_per_second(tiny_dir):
    encoder = build_encoder(str(tiny_dir))
    frames = encoder.encode(torch.randn(3, 24000) * 0.1)
    assert frames.shape == (3, 75, 32) and encoder.n_frames(24000) == 75 and not frames.requires_grad
    assert encoder.n_frames(24160) == 76 == encoder(torch.randn(1, 24160) * 0.1).shape[1]  # odd mel count
    with pytest.raises(ValueError, match="at most 1500 frames"):
        encoder(torch.zeros(1, 31 * 16000))


def test_unknown_hub_id_offline_names_the_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderLoadError, match=r"whisper-tiny\.en"):
        build_whisper_encoder("openai/whisper-nonexistent-model")


def test_freeze_strategies(tiny_dir):
    encoder = build_encoder(str(tiny_dir))
    encoder.set_trainable("head")
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.set_trainable("top-k", 1)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.2." in n or "encoder.layer_norm" in n for n in trainable)
    assert "encoder.layer_norm.weight" in trainable
    encoder.set_trainable("full")
    frozen = [n for n, p in encoder.named_parameters() if not p.requires_grad]
    assert frozen == ["encoder.embed_positions.weight"]  # Whisper's positions stay frozen
    with pytest.raises(ValueError, match="top_k"):
        encoder.set_trainable("top-k", 5)
    with pytest.raises(ValueError, match="freeze strategy"):
        encoder.set_trainable("some")


def test_ct2_folder_converts_to_the_same_model(tiny_whisper, tmp_path):
    """ctranslate2's conversion of a model, converted back by ours and loaded by transformers, computes
    the same logits; converting again onto a finished copy (a second process) keeps that copy."""
    model, root = tiny_whisper
    out = convert_ct2_whisper(root / "ct2", tmp_path / "converted")
    back = WhisperForConditionalGeneration.from_pretrained(out).eval()
    assert back.config.suppress_tokens == [3, 4] and back.config.decoder_start_token_id == 77
    features, tokens = log_mel(torch.randn(1, 30 * 16000) * 0.1), torch.tensor([[77, 78, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(
            back(features, decoder_input_ids=tokens).logits, model(features, decoder_input_ids=tokens).logits
        )
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    convert_ct2_whisper(root / "ct2", out)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # no staging folder left behind


@pytest.mark.slow
def test_bundled_tiny_en_converts_once_and_transcribes_tts(wakeword_cache, tts):
    audio = tts("open the door please", accent="en-US", speed=0.85)
    text = build_transcriber()(audio)
    assert re.sub(r"[^a-z ]", "", text.lower()).split() == ["open", "the", "door", "please"], text
    converted = converted_dir()
    assert converted.parent == wakeword_cache and (converted / "model.safetensors").exists()
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    encoder = build_encoder("whisper-tiny.en")  # cache hit: no second conversion
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    window = torch.from_numpy(np.pad(audio, (0, 24000))[None, :24000])
    assert encoder.dim == 384 and len(encoder.layers) == 4 and encoder.encode(window).shape == (1, 75, 384)


@torch.no_grad()
def _greedy_without_cache(transcriber, audio: np.ndarray) -> list[int]:
    """Reference decoding: one clip, the whole prefix through the decoder at every step (no key/value cache)."""
    from transformers.modeling_outputs import BaseModelOutput

    padded = np.zeros(transcriber.context_for(len(audio)), np.float32)
    padded[: len(audio)] = audio[: len(padded)]
    encoded = BaseModelOutput(last_hidden_state=transcriber.encoder(torch.from_numpy(padded)[None]))
    tokens = list(transcriber.prompt)
    for index in range(transcriber.max_tokens):
        logits = transcriber.model(encoder_outputs=encoded, decoder_input_ids=torch.tensor([tokens])).logits[0, -1]
        logits[transcriber.suppress] = -torch.inf
        if index == 0:
            logits[transcriber.suppress_first] = -torch.inf
        token = int(logits.argmax())
        if token == transcriber.end:
            break
        tokens.append(token)
    return tokens[len(transcriber.prompt) :]


def test_batched_greedy_decoding_equals_decoding_each_clip_alone(tmp_path):
    """Batches mix clips that end after different numbers of tokens (ended clips leave the batch and the cache)
    and clips longer than the context (their own, longer context): each transcript must be the clip's own."""
    from transformers import WhisperConfig

    from tests.encoders.conftest import END, START, _tokenizer
    from wakeword.audio import SAMPLE_RATE
    from wakeword.encoders.whisper import WhisperTranscriber

    config = WhisperConfig(vocab_size=80, num_mel_bins=80, d_model=16, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=24, pad_token_id=END,
                           bos_token_id=END, eos_token_id=END, decoder_start_token_id=START, suppress_tokens=[3, 4],
                           begin_suppress_tokens=[5, END], init_std=0.5)  # fmt: skip
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(tmp_path / "hf")
    _tokenizer(tmp_path / "hf" / "tokenizer.json")
    transcriber = WhisperTranscriber(str(tmp_path / "hf"), max_tokens=12, context_seconds=1.0, batch_size=3)
    with torch.no_grad():  # end-of-text wherever token 70 would win: a random model otherwise never ends
        weights = transcriber.model.get_output_embeddings().weight
        weights[END] = 1.05 * weights[70]
    rng = np.random.default_rng(0)
    shapes = ((0.3, 0.5), (0.9, 0.01), (1.6, 0.2), (0.5, 0.0), (0.7, 1.0), (2.2, 0.1), (0.4, 0.3))
    clips = [rng.normal(0, scale, int(SAMPLE_RATE * seconds)).astype(np.float32) for seconds, scale in shapes]
    reference = [_greedy_without_cache(transcriber, clip) for clip in clips]
    lengths = [len(tokens) for tokens in reference]
    assert len(set(lengths)) > 2 and min(lengths) < transcriber.max_tokens, lengths  # clips end at different steps
    assert not any(set(tokens) & {3, 4} for tokens in reference)  # suppress_tokens never come out
    expected = [transcriber.tokenizer.decode(t, skip_special_tokens=True).strip() for t in reference]
    assert transcriber.transcribe_batch(clips) == expected
    assert [transcriber(clip) for clip in clips] == expected
