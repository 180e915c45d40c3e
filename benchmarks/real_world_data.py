"""Evaluation sets of the real-world benchmark (issue 17 item 4) and their encoder-frame cache.

The encoder of a head-only transfer model is frozen, so the encoder frames of every evaluation window are
computed ONCE and stored under benchmarks/cache/frames/ (float16 .npy); a model's scores are then its head
applied to the cached frames. The windows are exactly those the streaming detector scores
(`wakeword.stream.StreamingDetector`): hop n (n = 1 .. ceil(n_samples / hop)) scores the window ENDING at
n * hop of the signal, left-padded with zeros before the signal starts and right-padded with zeros to a
full hop at its end.

Clips are prepared as `wakeword.evaluate.score_clip` does: one window of zeros before, AFTER_SECONDS of
zeros after, then mixed with the shared real noise by `NoiseMixer` at the protocol's SNR. Each clip's noise
draw is seeded from (protocol seed, clip path), not from its position in a list, so a clip gets the same
noisy version (and the same cached frames) whichever keyword's protocol it appears in.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from wakeword.audio import SAMPLE_RATE, load_audio
from wakeword.evaluate import AFTER_SECONDS, NoiseMixer, audio_files
from wakeword.models.base import Detector

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = REPO / "benchmarks" / "cache"
FRAME_DTYPE = np.float16  # measured against float32 in the equality check (see the report's "equality")
STREAM_CHUNK_HOPS = 2000  # the stream's frames are stored in chunks, so an interrupted encoding resumes


@dataclass(frozen=True)
class Protocol:
    """Everything the evaluation sets depend on (part of every cache key)."""

    seed: int = 0
    snr_db: float = 10.0
    test_group_fraction: float = 0.5  # share of a keyword's session groups held out for testing
    max_test_positives: int = 120
    n_digits: int = 500  # spoken digits (fsdd, 8 kHz) used as negative clips
    max_other_keyword_clips: int | None = None  # per other keyword; None = all of them
    max_sentence_clips: int | None = None  # speechocean test-half sentences as clips; None = all
    stream_minutes: float | None = None  # cap on the test-half stream; None = all of it

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


# The caps of the issue-17 result tables (docs/accuracy.md): the protocol other benchmarks reuse to compare with them
REPORTED_PROTOCOL = Protocol(n_digits=80, max_other_keyword_clips=80, max_sentence_clips=40)


@dataclass(frozen=True)
class Timing:
    """Window geometry of the frozen encoder the frames come from."""

    window_samples: int
    hop_samples: int
    encoder: str

    @classmethod
    def of(cls, detector: Detector) -> Timing:
        config = detector.config
        name = f"{config.encoder.get('name')}@{config.encoder.get('revision')}"
        return cls(config.window_samples, config.hop_samples, name)


def stream_windows(signal: np.ndarray, timing: Timing) -> np.ndarray:
    """The windows (n_hops, window_samples) StreamingDetector scores for `signal` (n_samples,), in order."""
    n_hops = -(-len(signal) // timing.hop_samples)
    padded = np.zeros(timing.window_samples + n_hops * timing.hop_samples, np.float32)
    padded[timing.window_samples : timing.window_samples + len(signal)] = signal
    view = np.lib.stride_tricks.sliding_window_view(padded, timing.window_samples)
    return view[timing.hop_samples :: timing.hop_samples][:n_hops]


def encode_windows(detector: Detector, windows: np.ndarray, batch: int = 32) -> np.ndarray:
    """Frozen-encoder frames (n_windows, n_frames, dim) float32 of windows (n_windows, window_samples)."""
    out = []
    for start in range(0, len(windows), batch):
        audio = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch]))
        out.append(detector.encode(audio).float().numpy())
    return np.concatenate(out)


# ---- the clips of the protocol ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipItem:
    """One evaluation clip: its file and what it is (keyword name, "digit" or "sentence")."""

    path: str
    kind: str
    group: str


def keyword_clips() -> dict[str, list[ClipItem]]:
    """All real keyword recordings by keyword (shared keywords/manifest.csv)."""
    rows = _manifest(SHARED / "keywords" / "manifest.csv")
    out: dict[str, list[ClipItem]] = {}
    for r in rows:
        out.setdefault(r["keyword"], []).append(ClipItem(str(SHARED / r["path"]), r["keyword"], r["session_group"]))
    return out


def _manifest(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (the benchmark reads the shared development data)")
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def split_groups(clips: Sequence[ClipItem], protocol: Protocol) -> tuple[list[str], list[str]]:
    """(test groups, train-pool groups) of one keyword: the sorted groups shuffled with the seed, halved."""
    groups = sorted({c.group for c in clips})
    np.random.default_rng(protocol.seed).shuffle(groups)
    n_test = round(len(groups) * protocol.test_group_fraction)
    return sorted(groups[:n_test]), sorted(groups[n_test:])


def test_positives(clips: Sequence[ClipItem], protocol: Protocol) -> list[ClipItem]:
    test_groups = set(split_groups(clips, protocol)[0])
    chosen = [c for c in clips if c.group in test_groups]
    return _subset(chosen, protocol.max_test_positives, protocol.seed)


def _subset(items: Sequence, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    keep = np.random.default_rng(seed).permutation(len(items))[:n]
    return [items[i] for i in sorted(keep)]


def speechocean_halves(protocol: Protocol) -> tuple[list[Path], list[Path]]:
    """(mining half, test half) of speechocean762 files, split by speaker with the seed (sorted paths)."""
    rows = _manifest(SHARED / "speech" / "speechocean762" / "manifest.csv")
    speakers = sorted({r["speaker"] for r in rows})
    np.random.default_rng(protocol.seed).shuffle(speakers)
    mining = set(speakers[: len(speakers) // 2])
    files = {True: [], False: []}
    for r in sorted(rows, key=lambda r: r["path"]):
        files[r["speaker"] in mining].append(SHARED / r["path"])
    return files[True], files[False]


def negative_clips(word: str, protocol: Protocol) -> list[ClipItem]:
    """Same-channel negatives of `word`: the other keywords' clips, spoken digits, test-half sentences."""
    items: list[ClipItem] = []
    for other, clips in sorted(keyword_clips().items()):
        if other != word:
            items += _subset(clips, protocol.max_other_keyword_clips, protocol.seed)
    digits = [ClipItem(str(p), "digit", "fsdd") for p in audio_files(SHARED / "speech" / "fsdd")]
    items += _subset(digits, protocol.n_digits, protocol.seed)
    sentences = [ClipItem(str(p), "sentence", p.parent.name) for p in speechocean_halves(protocol)[1]]
    return items + _subset(sentences, protocol.max_sentence_clips, protocol.seed)


def write_mining_list(protocol: Protocol) -> Path:
    """benchmarks/cache/speechocean_mining.txt (absolute paths) and a folder of symlinks to the same files,
    for training with the mining half as long negative audio. Never used for testing."""
    mining = speechocean_halves(protocol)[0]
    listing = CACHE / "speechocean_mining.txt"
    CACHE.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{p.resolve()}\n" for p in mining), encoding="utf-8")
    folder = CACHE / "speechocean_mining"
    folder.mkdir(exist_ok=True)
    for p in mining:
        link = folder / f"{p.parent.name}_{p.name}"
        if not link.is_symlink():
            link.symlink_to(p.resolve())
    return folder


# ---- padded, noisy clips and their cached frames ---------------------------------------------------------


class ClipPreparer:
    """Pads a clip like score_clip and mixes it with noise drawn from a per-clip seeded generator."""

    def __init__(self, protocol: Protocol, timing: Timing) -> None:
        self.protocol, self.timing = protocol, timing
        self.mixer = NoiseMixer(protocol.snr_db, audio_files(SHARED / "noise"), protocol.seed)

    def reseed(self, item: ClipItem) -> NoiseMixer:
        """The shared mixer, its generator reset for this clip (what makes a clip's noise order-free)."""
        relative = os.path.relpath(item.path, SHARED)
        self.mixer.rng = np.random.default_rng([self.protocol.seed, zlib.crc32(relative.encode())])
        return self.mixer

    def padded(self, item: ClipItem) -> np.ndarray:
        """The noisy padded clip (n_samples,) that score_clip would stream."""
        audio = load_audio(item.path)
        before = np.zeros(self.timing.window_samples, np.float32)
        after = np.zeros(int(AFTER_SECONDS * SAMPLE_RATE), np.float32)
        return self.reseed(item)(np.concatenate([before, audio, after]))


def _frames_dir(protocol: Protocol, timing: Timing) -> Path:
    parts = [protocol.seed, protocol.snr_db, asdict(timing), str(np.dtype(FRAME_DTYPE))]
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / "frames" / key


def clip_cache_path(item: ClipItem, protocol: Protocol, timing: Timing) -> Path:
    digest = hashlib.sha256(os.path.relpath(item.path, SHARED).encode()).hexdigest()[:20]
    return _frames_dir(protocol, timing) / "clips" / f"{digest}.npy"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(staging, array)
    os.replace(staging, path)


def encode_clips(encoder: Detector, items: Sequence[ClipItem], protocol: Protocol, desc: str) -> None:
    """Encode (once) every clip not yet in the cache: (n_hops, n_frames, dim) float16 per clip."""
    timing = Timing.of(encoder)
    todo = [i for i in dict.fromkeys(items) if not clip_cache_path(i, protocol, timing).exists()]
    if not todo:
        return
    preparer = ClipPreparer(protocol, timing)
    for item in tqdm(todo, desc=desc, unit="clip"):
        frames = encode_windows(encoder, stream_windows(preparer.padded(item), timing))
        _save_atomic(clip_cache_path(item, protocol, timing), frames.astype(FRAME_DTYPE))


def load_clip_frames(item: ClipItem, protocol: Protocol, timing: Timing) -> np.ndarray:
    return np.load(clip_cache_path(item, protocol, timing), mmap_mode="r")


# ---- the long negative stream ----------------------------------------------------------------------------


def stream_audio(protocol: Protocol) -> np.ndarray:
    """The speechocean test half concatenated into one clean stream (n_samples,), capped if asked."""
    pieces = [load_audio(p) for p in speechocean_halves(protocol)[1]]
    signal = np.concatenate(pieces)
    if protocol.stream_minutes is not None:
        signal = signal[: int(protocol.stream_minutes * 60 * SAMPLE_RATE)]
    return signal


def _stream_dir(protocol: Protocol, timing: Timing) -> Path:
    cap = "all" if protocol.stream_minutes is None else f"{protocol.stream_minutes:g}min"
    return _frames_dir(protocol, timing) / f"stream-{cap}"


def encode_stream(encoder: Detector, protocol: Protocol) -> tuple[Path, float]:
    """Encode the stream's windows in chunks (resumable); returns (chunk folder, stream seconds)."""
    timing = Timing.of(encoder)
    folder, signal = _stream_dir(protocol, timing), stream_audio(protocol)
    windows = stream_windows(signal, timing)
    n_chunks = -(-len(windows) // STREAM_CHUNK_HOPS)
    progress = tqdm(total=len(windows), desc="encoding stream", unit="window")
    for c in range(n_chunks):
        chunk = windows[c * STREAM_CHUNK_HOPS : (c + 1) * STREAM_CHUNK_HOPS]
        path = folder / f"{c:04d}.npy"
        if not path.exists():
            _save_atomic(path, encode_windows(encoder, chunk).astype(FRAME_DTYPE))
        progress.update(len(chunk))
    progress.close()
    (folder / "info.json").write_text(json.dumps({"seconds": len(signal) / SAMPLE_RATE, "hops": len(windows)}))
    return folder, len(signal) / SAMPLE_RATE


def stream_chunks(folder: Path) -> list[np.ndarray]:
    """The stream's cached frame chunks in order, memory-mapped."""
    return [np.load(p, mmap_mode="r") for p in sorted(folder.glob("[0-9]*.npy"))]
