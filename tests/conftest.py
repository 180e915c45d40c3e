"""Shared fixtures. `tts` says text with the bundled espeak-ng (real speech, no files, no network)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from transformers import WhisperConfig, WhisperModel


@pytest.fixture(scope="session")
def tts() -> Iterator[Callable[..., np.ndarray]]:
    """say(text, accent="en-US", variant="", speed=1.0, pitch=0.5, pitch_range=0.5) -> (n_samples,) float32
    at 16 kHz. Cached per arguments for the session: callers must not modify the returned array.

    Each utterance is rendered in a fresh process forked from wakeword.data.render's zygote with one seed:
    espeak-ng keeps state from one utterance to the next, so in this process the same call gave other audio
    after other tests had synthesised (and a tiny model trained on it came out differently with test order)."""
    from wakeword.data.render import Renderer
    from wakeword.data.tts import EspeakBackend, Voice, VoiceSettings

    renderer = Renderer(EspeakBackend(), workers=1)

    @functools.lru_cache(maxsize=256)
    def say(text: str, accent: str = "en-US", variant: str = "", speed: float = 1.0, pitch: float = 0.5,
            pitch_range: float = 0.5) -> np.ndarray:  # fmt: skip
        voice = Voice(f"espeak:{accent}{'+' + variant if variant else ''}", "espeak", accent, variant)
        (audio,) = renderer.render([(text, VoiceSettings(voice, speed, pitch, pitch_range))], seed=0, stream=0)
        audio.flags.writeable = False
        return audio

    yield say
    renderer.close()


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A randomly initialised (seed 0), very small Whisper saved locally with save_pretrained (no network)."""
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
    import torch

    with torch.random.fork_rng():  # the same weights whichever test asks first (unseeded, tests passed or
        torch.manual_seed(0)  # failed by the order they ran in), without moving the caller's random state
        WhisperModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def speech(tts, tmp_path_factory) -> tuple:
    """A 16 kHz float WAV of sentences and wake words between half-second silences: (path, (n,) float32 samples)."""
    import soundfile as sf

    silence = np.zeros(8000, np.float32)
    parts = [tts("good morning everyone"), tts("jarvis"), tts("hey computer"), tts("play some music"), tts("jarvis")]
    audio = np.concatenate([x for part in parts for x in (silence, part)] + [silence]).astype(np.float32)
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path, audio


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy machine a second thread waiting for a core stalls
    every step (seconds instead of milliseconds). Use with pytestmark = pytest.mark.usefixtures(...)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
