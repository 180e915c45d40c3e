"""Audio constants and the one way audio enters the package.

Everything inside the package is 16 kHz mono float32 in [-1, 1]. The front-end constants are
Whisper's, because the pretrained encoder was trained on exactly these features.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
from collections.abc import Iterator
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
# Header rates outside this range are corruption, not audio: a 1 Hz header on a few kilobytes would
# resample into gigabytes. 8 kHz telephone audio is the lowest real rate; 768 kHz the highest in use.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000
_PREALLOCATE_BYTES = 1 << 30  # trust a header's length up to 1 GiB of float32; beyond, read block by block
_BLOCK_FRAMES = 1 << 20

AudioSource = str | os.PathLike | bytes | BinaryIO


class AudioError(ValueError):
    """Audio that cannot be used: the message names the file and the reason."""


def _describe(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if hasattr(source, "read"):
        return str(getattr(source, "name", "<stream>"))
    return str(source)


def _wav_shortfall(handle: BinaryIO) -> tuple[int, int] | None:
    """(declared, present) bytes of a RIFF/WAVE data chunk that the file cuts short, else None.

    libsndfile quietly shortens such a file to the samples present, so a recording cut off mid-word would
    be kept, labelled as if whole. Writers that cannot seek back (pipes, live recorders) leave the size
    0 or 0xFFFFFFFF: those are not truncation. Reads from the current position and restores it.
    """
    start = handle.tell()
    try:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(start)
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        position = start + 12
        for _ in range(64):  # a real WAV has a handful of chunks before its data
            handle.seek(position)
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            declared = struct.unpack("<I", chunk[4:])[0]
            if chunk[:4] == b"data":
                present = size - position - 8
                streamed = declared in (0, 0xFFFFFFFF)
                return None if streamed or declared <= present else (declared, present)
            position += 8 + declared + (declared & 1)  # chunks are padded to an even size
        return None
    finally:
        handle.seek(start)


def _check_whole(source: str | os.PathLike | BinaryIO, name: str) -> None:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            shortfall = _wav_shortfall(handle)
    elif getattr(source, "seekable", lambda: False)():
        shortfall = _wav_shortfall(source)
    else:
        return
    if shortfall is not None:
        declared, present = shortfall
        raise AudioError(f"{name}: truncated WAV (header declares {declared} bytes of samples, file holds {present})")


def _decode(handle: sf.SoundFile, name: str, max_frames: int | None) -> np.ndarray:
    """All frames as (n_frames, n_channels) float32, refusing more than max_frames before decoding them."""
    claimed = handle.frames
    known = 0 <= claimed < 2**62  # libsndfile reports an unknown length (streamed FLAC) as 2**63 - 1
    if known and max_frames is not None and claimed > max_frames:
        limit = max_frames / handle.samplerate
        raise AudioError(f"{name}: too long ({claimed / handle.samplerate:.1f} s; at most {limit:g} s)")
    if known and claimed * handle.channels * 4 <= _PREALLOCATE_BYTES:
        return handle.read(dtype="float32", always_2d=True)
    # unknown or huge claimed length: never allocate what the header says, only what is really there
    blocks, n_frames = [], 0
    while True:
        block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if not len(block):
            break
        n_frames += len(block)
        if max_frames is not None and n_frames > max_frames:
            raise AudioError(f"{name}: too long (more than {max_frames / handle.samplerate:g} s)")
        blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros((0, handle.channels), np.float32)


def _open(source: AudioSource, name: str) -> sf.SoundFile:
    """Open audio for decoding after the checks every reader shares (missing, a directory, empty, truncated
    WAV, unreadable header, implausible rate); every failure is an AudioError naming the file."""
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
        _check_whole(source, name)
        handle = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as error:
        if isinstance(error, AudioError):
            raise
        raise _unreadable(name, error) from None
    if not MIN_SAMPLE_RATE <= handle.samplerate <= MAX_SAMPLE_RATE:
        handle.close()
        raise AudioError(f"{name}: implausible sample rate {handle.samplerate} Hz (corrupt header?)")
    return handle


def _unreadable(name: str, error: Exception) -> AudioError:
    return AudioError(f"{name}: unreadable or truncated audio ({error})")


def _check_samples(name: str, data: np.ndarray) -> None:
    """Refuse non-finite samples. data: (n_frames, n_channels) float32."""
    # float64 accumulation: any NaN or inf makes the sum non-finite, and finite float32 samples cannot
    # overflow it, so this checks every sample without an n-sized boolean temporary
    if not np.isfinite(np.sum(data, dtype=np.float64)):
        raise AudioError(f"{name}: contains NaN or infinite samples")


def _check_length(name: str, n_frames: int, rate: int) -> None:
    """Refuse audio with no samples, or too short for one analysis frame once at 16 kHz."""
    if n_frames == 0:
        raise AudioError(f"{name}: contains no samples")
    if math.ceil(n_frames * SAMPLE_RATE / rate) < MIN_AUDIO_SAMPLES:
        raise AudioError(f"{name}: too short ({n_frames / rate * 1000:.1f} ms; need at least 25 ms)")


def _read_raw(source: AudioSource, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (WAV/FLAC/OGG/MP3 and the rest it reads); every failure is an AudioError."""
    with _open(source, name) as handle:
        rate = handle.samplerate
        max_frames = None if max_seconds is None else math.floor(max_seconds * rate)
        try:
            data = _decode(handle, name, max_frames)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as error:
            if isinstance(error, AudioError):
                raise
            raise _unreadable(name, error) from None
        except MemoryError:
            raise AudioError(f"{name}: too large to decode into memory") from None
    return data, rate


def read_blocks(path: str | os.PathLike, block_seconds: float) -> Iterator[tuple[np.ndarray, int, bool]]:
    """A file read block by block, refused for exactly what load_audio refuses, with the same messages.

    Yields (mono float32 block (n_frames,) at the file's own rate, rate, is_last_block). One block is read
    ahead, so a file too short or with no samples is refused before anything of it is yielded; a file that
    fails to decode (or holds NaN) part way is refused when the reader gets there.
    """
    name = _describe(path)
    with _open(path, name) as handle:
        rate, n_frames, pending = handle.samplerate, 0, None
        blocks = handle.blocks(blocksize=max(1, int(block_seconds * rate)), dtype="float32", always_2d=True)
        while True:
            try:
                block = next(blocks)
            except StopIteration:
                break
            except (sf.LibsndfileError, RuntimeError, ValueError) as error:
                raise _unreadable(name, error) from None
            _check_samples(name, block)
            n_frames += len(block)
            if pending is not None:
                yield pending, rate, False
            pending = block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
        _check_length(name, n_frames, rate)
        yield pending, rate, True


def resample(audio: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 signal (soxr high quality via librosa)."""
    if orig_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(audio, orig_sr=orig_rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Read any supported file (path, bytes or binary stream) as float32 mono at `sample_rate`.

    Returns shape (n_samples,). Channels are averaged; integer PCM is scaled to [-1, 1].
    max_seconds: refuse longer audio, from the header where it tells the length, before decoding it
    (a small compressed upload can hold hours). Without it any length loads; memory is about the
    decoded file once (a 2-hour 16 kHz mono file takes 460 MB).
    Raises AudioError for missing, unreadable, truncated, empty, too short, too long or non-finite audio.
    """
    name = _describe(source)
    data, rate = _read_raw(source, name, max_seconds)
    if data.size == 0:
        raise AudioError(f"{name}: contains no samples")
    _check_samples(name, data)
    _check_length(name, data.shape[0], rate)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    mono = resample(mono, rate, sample_rate)
    return np.clip(mono, -1.0, 1.0, out=mono)  # in place: the decoded array is ours


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
    tmp = staging_path(path)
    try:  # the staging file is created inside the try, so a Ctrl-C at any point cannot leave it behind
        with open(tmp, "wb") as handle:
            sf.write(handle, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def staging_path(path: Path) -> Path:
    """A hidden temp name beside `path`, unique per process and thread. Known before the file exists:
    tempfile.mkstemp creates the file before returning its name, and a SIGINT in between (seen in CI)
    left an orphan no handler knew of."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def seconds_to_samples(seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    return round(seconds * sample_rate)


class WindowTiming:
    """`window_samples` / `hop_samples` of anything with `window_seconds` and `hop_seconds` (a detector's
    config, the torch-free runtime's config): one definition for both."""

    window_seconds: float
    hop_seconds: float

    @property
    def window_samples(self) -> int:
        return seconds_to_samples(self.window_seconds)

    @property
    def hop_samples(self) -> int:
        return seconds_to_samples(self.hop_seconds)
