"""Shared fixtures. `tts` says text with the bundled espeak-ng (real speech, no files, no network)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
from transformers import WhisperConfig, WhisperModel


@pytest.fixture(scope="session")
def tts() -> Callable[..., np.ndarray]:
    """say(text, accent="en-US", variant="", speed=1.0, pitch=0.5, pitch_range=0.5) -> (n_samples,) float32
    at 16 kHz. Cached per arguments for the session: callers must not modify the returned array."""
    from wakeword.data.tts import EspeakBackend, Voice, VoiceSettings

    backend = EspeakBackend()

    @functools.lru_cache(maxsize=256)
    def say(text: str, accent: str = "en-US", variant: str = "", speed: float = 1.0, pitch: float = 0.5,
            pitch_range: float = 0.5) -> np.ndarray:  # fmt: skip
        voice = Voice(f"espeak:{accent}{'+' + variant if variant else ''}", "espeak", accent, variant)
        audio = backend.synthesize(text, VoiceSettings(voice, speed, pitch, pitch_range))
        audio.flags.writeable = False
        return audio

    return say


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
