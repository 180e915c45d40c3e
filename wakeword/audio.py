"""Audio constants and the one way audio enters the package.

Everything inside the package is 16 kHz mono float32 in [-1, 1]. The front-end constants are
Whisper's, because the pretrained encoder was trained on exactly these features.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms analysis window at 16 kHz
HOP_LENGTH = 160  # 10 ms between frames
N_MELS = 80
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second

WINDOW_SECONDS = 1.5  # default detector window: long enough for a two-word wake phrase
HOP_SECONDS = 0.1  # default scoring interval of the streaming detector
MIN_AUDIO_SAMPLES = N_FFT  # shorter audio has no complete analysis frame

AudioSource = str | os.PathLike | bytes | BinaryIO


class AudioError(ValueError):
    """Audio that cannot be used: the message names the file and the reason."""


def _describe(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if hasattr(source, "read"):
        return str(getattr(source, "name", "<stream>"))
    return str(source)


def _read_raw(source: AudioSource, name: str) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (WAV/FLAC/OGG/MP3); fall back to librosa's audioread for the rest."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name}: is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{name}: empty file (0 bytes)")
    elif isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise AudioError(f"{name}: empty input (0 bytes)")
        source = io.BytesIO(source)
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"{name}: unreadable or truncated audio ({error})") from None
    return data, rate


def resample(audio: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 signal (soxr high quality via librosa)."""
    if orig_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(audio, orig_sr=orig_rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any supported file (path, bytes or binary stream) as float32 mono at `sample_rate`.

    Returns shape (n_samples,). Channels are averaged; integer PCM is scaled to [-1, 1].
    Raises AudioError for missing, unreadable, truncated, empty, too short or non-finite audio.
    """
    name = _describe(source)
    data, rate = _read_raw(source, name)
    if data.size == 0 or data.shape[0] == 0:
        raise AudioError(f"{name}: contains no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    mono = data.mean(axis=1)
    mono = resample(mono, rate, sample_rate)
    if mono.shape[0] < MIN_AUDIO_SAMPLES * sample_rate // SAMPLE_RATE:
        seconds = data.shape[0] / rate
        raise AudioError(f"{name}: too short ({seconds * 1000:.1f} ms; need at least 25 ms)")
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def check_audio(audio: np.ndarray, name: str = "<array>") -> np.ndarray:
    """Validate an in-memory signal the way load_audio validates files; returns float32 mono."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1) if audio.shape[1] <= 8 else audio.mean(axis=0)
    if audio.ndim != 1 or audio.size == 0:
        raise AudioError(f"{name}: expected a non-empty mono signal, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return audio


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM WAV atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = check_audio(audio, str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            sf.write(handle, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def seconds_to_samples(seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    return round(seconds * sample_rate)
