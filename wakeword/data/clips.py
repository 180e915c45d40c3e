"""Clip records and the data-set folder: `clips.jsonl` (one Clip per line) + `audio/<id>.wav`.

Every write is atomic (temp file + rename, under a lock file) so two writers lose no clip and a
crash leaves the previous manifest intact. Audio is written before the manifest names it; writers that
add many clips go through DataSet.writing(), which removes the audio of any clip a failure (Ctrl-C
included) kept out of the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from wakeword.audio import SAMPLE_RATE, AudioError, load_audio, staging_path, write_audio

MANIFEST = "clips.jsonl"
AUDIO_DIR = "audio"
SOURCES = ("recorded", "synth", "corpus", "augmented", "mined", "corrected")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".webm", ".opus", ".aiff", ".aif")


class ManifestError(ValueError):
    """A data set whose manifest or audio cannot be trusted; the message names file, line or clip."""


def normalize_word(word: str) -> str:
    """Wake words are compared case- and space-insensitively: ' Hey  Computer' -> 'hey computer'."""
    return " ".join(word.lower().split())


@dataclass(frozen=True)
class Clip:
    """One labelled recording. `labels` maps wake word -> 1 (said) / 0 (not said); a word missing
    from `labels` is unknown for this clip and contributes no loss (multi-task masking)."""

    id: str
    path: str  # relative to the data-set folder, e.g. "audio/<id>.wav"
    labels: dict[str, int]
    source: str
    speaker: str = ""
    duration_seconds: float = 0.0
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: voice, session group, origin time

    def __post_init__(self) -> None:
        # a manifest is data anyone can hand over with a data set: the id names a file we write and the
        # path one we read and delete, so neither may reach outside the data-set folder
        if not isinstance(self.id, str) or not self.id or self.id in (".", "..") or any(c in self.id for c in "/\\\0"):
            raise ValueError(f"clip id {self.id!r}: must be a plain name (no slashes)")
        parts = PurePosixPath(str(self.path).replace("\\", "/")).parts
        if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
            raise ValueError(f"clip {self.id}: path {self.path!r} must lie inside the data-set folder")
        if self.source not in SOURCES:
            raise ValueError(f"clip {self.id}: source {self.source!r} is not one of {SOURCES}")
        for word, value in self.labels.items():
            if value not in (0, 1):
                raise ValueError(f"clip {self.id}: label {word!r} must be 0 or 1, got {value!r}")

    def replace(self, **changes: Any) -> Clip:
        """A new record with `changes` applied; records are never modified in place."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Clip:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        missing = {"id", "path", "labels", "source"} - set(data)
        if missing:
            raise ValueError(f"missing field(s) {sorted(missing)}")
        labels = {normalize_word(w): int(v) for w, v in dict(data["labels"]).items()}
        return cls(**{**data, "labels": labels})


def new_clip_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = staging_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_manifest(path: Path) -> list[Clip]:
    """Parse a clips.jsonl; a bad line raises ManifestError naming the file and line number."""
    clips, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                clip = Clip.from_dict(json.loads(line))
            except (ValueError, TypeError) as error:
                raise ManifestError(f"{path}:{line_no}: corrupt clip record ({error})") from None
            if clip.id in seen:
                raise ManifestError(f"{path}:{line_no}: duplicate clip id {clip.id!r}")
            seen.add(clip.id)
            clips.append(clip)
    return clips


@dataclass
class ImportReport:
    added: list[Clip] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


class ClipWriter:
    """DataSet.make_clip that records each clip's id before its audio file is written, so a Ctrl-C that lands
    after the file's rename but before make_clip returns (seen in CI) still finds the file to remove.
    Get one from DataSet.writing()."""

    def __init__(self, dataset: DataSet) -> None:
        self.dataset, self.clip_ids = dataset, []

    def make_clip(self, audio: np.ndarray, labels: Mapping[str, int], source: str, **kw: Any) -> Clip:
        """As DataSet.make_clip: write the audio, return the record (not yet in the manifest)."""
        self.clip_ids.append(kw.pop("clip_id", None) or new_clip_id())
        return self.dataset.make_clip(audio, labels, source, clip_id=self.clip_ids[-1], **kw)

    def remove_unrecorded(self) -> None:
        """Delete the audio of every clip written here that the manifest does not name."""
        try:
            named = {c.id for c in self.dataset.clips()}
        except (ManifestError, OSError):  # unreadable now: deleting could remove audio it names
            return
        for clip_id in self.clip_ids:
            if clip_id not in named:
                self.dataset._clip_audio_path(clip_id).unlink(missing_ok=True)


class DataSet:
    """A data-set folder. Open an existing one with DataSet(root); make one with DataSet.create(root)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not (self.root / MANIFEST).is_file():
            raise ManifestError(f"{self.root}: not a data set (no {MANIFEST}); create it first")

    @classmethod
    def create(cls, root: str | os.PathLike, exist_ok: bool = True) -> DataSet:
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ManifestError(f"{root}: exists and is not a folder")
        manifest = root / MANIFEST
        if manifest.exists() and not exist_ok:
            raise ManifestError(f"{root}: data set already exists")
        (root / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
        if not manifest.exists():
            _atomic_write_text(manifest, "")
        return cls(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def clips(self) -> list[Clip]:
        return read_manifest(self.manifest_path)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips())

    def __len__(self) -> int:
        return len(self.clips())

    def get(self, clip_id: str) -> Clip:
        for clip in self.clips():
            if clip.id == clip_id:
                return clip
        raise KeyError(f"{self.root}: no clip with id {clip_id!r}")

    def audio_path(self, clip: Clip) -> Path:
        return self.root / clip.path

    def load(self, clip: Clip) -> np.ndarray:
        """The clip's audio, (n_samples,) float32 at 16 kHz; a missing file names the clip id."""
        path = self.audio_path(clip)
        if not path.exists():
            raise ManifestError(f"{self.root}: clip {clip.id} names missing audio file {clip.path}")
        return load_audio(path)

    def _append(self, new: list[Clip]) -> None:
        with self._locked():
            existing = self.clips()
            ids = {c.id for c in existing}
            clash = [c.id for c in new if c.id in ids]
            if clash:
                raise ManifestError(f"{self.root}: clip id(s) already present: {clash[:5]}")
            lines = [json.dumps(c.to_dict(), ensure_ascii=False) for c in existing + new]
            _atomic_write_text(self.manifest_path, "".join(line + "\n" for line in lines))

    def _clip_audio_path(self, clip_id: str) -> Path:
        return self.root / AUDIO_DIR / f"{clip_id}.wav"

    def _write_clip_audio(self, audio: np.ndarray, clip_id: str) -> tuple[str, float]:
        relative = f"{AUDIO_DIR}/{clip_id}.wav"
        write_audio(self._clip_audio_path(clip_id), audio)
        return relative, len(audio) / SAMPLE_RATE

    def make_clip(
        self,
        audio: np.ndarray,
        labels: Mapping[str, int],
        source: str,
        *,
        speaker: str = "",
        text: str = "",
        meta: Mapping[str, Any] | None = None,
        clip_id: str | None = None,
    ) -> Clip:
        """Write the audio file and return its record, not yet in the manifest (see add_clips)."""
        clip_id = clip_id or new_clip_id()
        labels = {normalize_word(w): int(v) for w, v in labels.items()}
        relative, seconds = self._write_clip_audio(audio, clip_id)
        return Clip(clip_id, relative, labels, source, speaker, round(seconds, 4), text, dict(meta or {}))

    @contextlib.contextmanager
    def writing(self) -> Iterator[ClipWriter]:
        """A ClipWriter for the block. If the block raises (Ctrl-C, a full disk, a clash in the manifest), every
        file it wrote that the manifest does not name is removed, so no orphan audio is left; clips added
        before the failure keep theirs."""
        writer = ClipWriter(self)
        try:
            yield writer
        except BaseException:
            writer.remove_unrecorded()
            raise

    def add_clips(self, clips: Iterable[Clip]) -> list[Clip]:
        """Record clips whose audio is already in the folder, in one atomic manifest update."""
        clips = list(clips)
        if clips:
            self._append(clips)
        return clips

    def add_audio(self, audio: np.ndarray, labels: Mapping[str, int], source: str = "recorded", **kw: Any) -> Clip:
        """Add one clip from a (n_samples,) float32 16 kHz array."""
        with self.writing() as writer:
            return self.add_clips([writer.make_clip(audio, labels, source, **kw)])[0]

    def add_file(self, path: str | os.PathLike, labels: Mapping[str, int], source: str = "recorded", **kw: Any) -> Clip:
        """Add one clip from an audio file of any supported format and rate (stored as 16 kHz WAV)."""
        return self.add_audio(load_audio(path), labels, source, **kw)

    def import_folder(
        self,
        folder: str | os.PathLike,
        labels: Mapping[str, int],
        source: str = "recorded",
        speaker: str | None = None,
    ) -> ImportReport:
        """Import every audio file under `folder` (recursively). Unreadable files are reported, not fatal.

        The speaker defaults to the file's parent folder name, so `DIR/<speaker>/*.wav` keeps speakers apart
        and a flat `DIR/*.wav` is taken as one speaker named after DIR (never as one speaker per file, which
        would let a split hold out clips of the very person the model is for).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ManifestError(f"{folder}: not a folder")
        report = ImportReport()
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        with self.writing() as writer:
            for path in files:
                try:
                    audio = load_audio(path)
                except AudioError as error:
                    report.failed.append((str(path), str(error)))
                    continue
                who = speaker if speaker is not None else path.parent.name
                original = {"original": str(path.relative_to(folder))}
                report.added.append(writer.make_clip(audio, labels, source, speaker=who, meta=original))
            self.add_clips(report.added)  # all together or, on Ctrl-C, none (the writer removes their audio)
        return report

    def delete(self, clip_id: str) -> Clip:
        """Remove a clip from the manifest, then its audio file."""
        with self._locked():
            clips = self.clips()
            keep = [c for c in clips if c.id != clip_id]
            if len(keep) == len(clips):
                raise KeyError(f"{self.root}: no clip with id {clip_id!r}")
            gone = next(c for c in clips if c.id == clip_id)
            _atomic_write_text(self.manifest_path, "".join(json.dumps(c.to_dict()) + "\n" for c in keep))
        self.audio_path(gone).unlink(missing_ok=True)
        return gone

    def check(self) -> list[str]:
        """Problems that would break training: audio named but missing, and orphan audio files."""
        clips = self.clips()
        problems = [f"clip {c.id}: missing audio file {c.path}" for c in clips if not self.audio_path(c).exists()]
        named = {c.path for c in clips}
        for path in sorted((self.root / AUDIO_DIR).glob("*.wav")):
            if f"{AUDIO_DIR}/{path.name}" not in named:
                problems.append(f"orphan audio file {AUDIO_DIR}/{path.name} (not in {MANIFEST})")
        return problems

    def counts(self) -> dict[str, dict[str, int]]:
        """Per wake word: number of positive and negative clips."""
        out: dict[str, dict[str, int]] = {}
        for clip in self.clips():
            for word, value in clip.labels.items():
                entry = out.setdefault(word, {"positive": 0, "negative": 0})
                entry["positive" if value else "negative"] += 1
        return out
