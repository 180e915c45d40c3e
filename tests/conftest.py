"""Shared fixtures. `tts` says text with the bundled espeak-ng (real speech, no files, no network)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tts() -> Callable[..., np.ndarray]:
    """say(text, accent="en-US", variant="", speed=1.0, pitch=0.5, pitch_range=0.5) -> (n_samples,) float32
    at 16 kHz. Cached per arguments for the session: callers must not modify the returned array."""
    from wakeword.data.synth import EspeakBackend, Voice, VoiceSettings

    backend = EspeakBackend()

    @functools.lru_cache(maxsize=256)
    def say(text: str, accent: str = "en-US", variant: str = "", speed: float = 1.0, pitch: float = 0.5,
            pitch_range: float = 0.5) -> np.ndarray:  # fmt: skip
        voice = Voice(f"espeak:{accent}{'+' + variant if variant else ''}", "espeak", accent, variant)
        audio = backend.synthesize(text, VoiceSettings(voice, speed, pitch, pitch_range))
        audio.flags.writeable = False
        return audio

    return say
