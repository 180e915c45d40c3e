"""The training Dataset: fixed windows with a label and a mask per wake word.

A window is what the streaming detector scores: `window_seconds` of audio. A clip positive for any wake word
is placed so its speech END (energy endpoint) lands `end_gap_seconds` before the window's end, as the
detector will see it the moment the word is finished; a longer clip loses its start. Negatives give a random
window (short ones padded, or, with probability `p_negative_end_aligned`, placed like positives so that
confusable phrases are seen exactly where positives are). Long negatives give several windows.

Multi-task: a wake word missing from a clip's labels gets mask 0 and must contribute no loss.
Items are dicts that torch's default collate batches: audio (window_samples,) float32, labels and mask
(n_words,) float32, clip_id str.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from wakeword.audio import SAMPLE_RATE, WINDOW_SECONDS, load_audio, seconds_to_samples
from wakeword.data.augment import (
    AugmentSettings,
    NoiseBank,
    RirBank,
    augment_audio,
    build_noise_bank,
    build_rir_bank,
    speech_bounds,
)
from wakeword.data.clips import Clip, DataSet, ManifestError, normalize_word

T = TypeVar("T")
ClipSources = DataSet | Sequence[DataSet] | Sequence[tuple[Clip, str | os.PathLike]]
N_BABBLE_SOURCES = 32  # negative clips loaded to make babble noise when no noise folder is given
REAL_SOURCES = ("recorded", "corpus", "corrected")  # clips a microphone made (not TTS, not augmented copies)
# Negatives cut from each real positive, so its channel (microphone, room, level) is seen as "not the word"
# too: the audio around the word, the word cut short at either end, and the word played backwards.
SAME_CHANNEL_KINDS = ("background", "cut-start", "cut-end", "reversed")
CUT_FRACTION = (0.35, 0.65)  # where a cut falls in the word, as a share of its length (middle when not training)
MIN_BACKGROUND_SECONDS = 0.25  # less audio around the word than this: the reversed word stands in for it
SPEECH_MARGIN_SECONDS = 0.1  # kept away from the word's energy bounds when taking its background
# how windows are cut from clips: cached encoded training views (wakeword.fitting) are keyed by it
# 2: the word is the loudest utterance (augment.speech_bounds), not first-to-last sound; 3: its background
# level is the median frame in noisy recordings
WINDOWING_VERSION = 3


def is_real(clip: Clip) -> bool:
    """Recorded by a microphone (the user's clips, a corpus, corrected activations), not TTS or augmented."""
    return clip.source in REAL_SOURCES


def place_end(audio: np.ndarray, end: int, window_samples: int, gap_samples: int) -> np.ndarray:
    """A (window_samples,) window holding `audio` so that sample `end` (exclusive speech end) falls
    `gap_samples` before the window's end. Audio before the window is cropped; gaps are zero."""
    offset = window_samples - gap_samples - end  # window position of audio[0]
    return place_at(audio, offset, window_samples)


def place_at(audio: np.ndarray, offset: int, window_samples: int) -> np.ndarray:
    """A (window_samples,) window with audio[0] at window position `offset` (may be negative: crop)."""
    window = np.zeros(window_samples, dtype=np.float32)
    lo, hi = max(0, -offset), min(len(audio), window_samples - offset)
    if hi > lo:
        window[lo + offset : hi + offset] = audio[lo:hi]
    return window


def default_group(item: Any) -> Hashable:
    """Session group, else speaker, else the parent clip (augmented copies stay with it), else the clip id."""
    clip = item[0] if isinstance(item, tuple) else item
    return clip.meta.get("session_group") or clip.speaker or clip.meta.get("parent") or clip.id


def split_by_group(
    clips: Sequence[T], val_fraction: float, seed: int = 0, key: Callable[[T], Hashable] = default_group
) -> tuple[list[T], list[T]]:
    """Split clips (or (clip, root) pairs) into (train, val) so that no group is on both sides.

    Groups are shuffled with `seed` and moved to val until it holds >= val_fraction of the clips; with two or
    more groups and 0 < val_fraction < 1, each side gets at least one. Original order is kept on each side.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    sizes = Counter(key(c) for c in clips)
    groups = sorted(sizes, key=str)
    np.random.default_rng(seed).shuffle(groups)
    val_groups: set[Hashable] = set()
    n_val, target = 0, val_fraction * len(clips)
    for group in groups:
        if n_val >= target or (len(val_groups) == len(groups) - 1 and val_fraction < 1.0):
            break
        val_groups.add(group)
        n_val += sizes[group]
    return [c for c in clips if key(c) not in val_groups], [c for c in clips if key(c) in val_groups]


def _clip_pairs(sources: ClipSources) -> list[tuple[Clip, Path]]:
    if isinstance(sources, DataSet):
        sources = [sources]
    pairs = []
    for source in sources:
        if isinstance(source, DataSet):
            pairs += [(clip, source.root) for clip in source.clips()]
        else:
            clip, root = source
            pairs.append((clip, Path(root)))
    return pairs


class WakeWordDataset(Dataset):
    """Fixed windows with labels and masks per wake word, from data sets or (clip, data-set root) pairs.

    train=True: random placement (end gap drawn from `end_gap_seconds`, random negative crops) and, when
    `augment` is given, on-the-fly speed and RIR on the clip, then noise and gain on the window (the
    placement is the time shift). train=False: fixed placement (the middle of the gap range), no augmentation.
    Clips labelled for none of `wake_words` are left out (`n_unlabelled` counts them). Audio is cached in
    memory once loaded. Each draw uses its own Generator from (seed, epoch, index, draw count, DataLoader
    base seed), so runs are reproducible and each epoch differs, with or without worker processes.
    """

    def __init__(
        self,
        clips: ClipSources,
        wake_words: Sequence[str],
        window_seconds: float = WINDOW_SECONDS,
        train: bool = True,
        augment: AugmentSettings | None = None,
        seed: int = 0,
        *,
        end_gap_seconds: tuple[float, float] = (0.1, 0.4),
        p_negative_end_aligned: float = 0.5,
        max_windows_per_clip: int = 8,
        same_channel: Sequence[str] = (),
        noise_bank: NoiseBank | None = None,
        rir_bank: RirBank | None = None,
    ) -> None:
        self.wake_words = [normalize_word(w) for w in wake_words]
        if not self.wake_words or len(set(self.wake_words)) != len(self.wake_words):
            raise ValueError(f"wake_words must be non-empty and distinct, got {list(wake_words)}")
        low, high = end_gap_seconds
        if not 0.0 <= low <= high < window_seconds:
            raise ValueError(f"end_gap_seconds {end_gap_seconds} must satisfy 0 <= low <= high < window_seconds")
        self.window_samples = seconds_to_samples(window_seconds)
        self.train, self.augment, self.seed = train, augment if train else None, seed
        self.end_gap_samples = (seconds_to_samples(low), seconds_to_samples(high))
        self.p_negative_end_aligned = p_negative_end_aligned
        unknown = sorted(set(same_channel) - set(SAME_CHANNEL_KINDS))
        if unknown:
            raise ValueError(f"unknown same-channel negative kind(s) {unknown}; expected some of {SAME_CHANNEL_KINDS}")
        self.same_channel = tuple(same_channel)
        pairs = _clip_pairs(clips)
        self.clips = [(c, root) for c, root in pairs if any(w in c.labels for w in self.wake_words)]
        self.n_unlabelled = len(pairs) - len(self.clips)
        self._targets = [self._label_mask(c) for c, _ in self.clips]
        self._positive = [bool(labels.max()) for labels, _ in self._targets]
        self._index = self._window_index(max_windows_per_clip)
        self._cache: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}
        self._draws: Counter[int] = Counter()
        self.epoch = 0
        self.noise_bank, self.rir_bank = noise_bank, rir_bank
        if self.augment is not None:
            self._build_banks()

    # ------------------------------------------------------------ setup

    def _label_mask(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        labels = np.array([clip.labels.get(w, 0) for w in self.wake_words], dtype=np.float32)
        mask = np.array([w in clip.labels for w in self.wake_words], dtype=np.float32)
        return labels * mask, mask

    def _window_index(self, max_windows: int) -> list[tuple[int, int, int, str]]:
        """(clip index, window number, windows of that clip, same-channel kind or ""): one per positive,
        several per long negative, plus one negative of each same-channel kind per real positive."""
        window_seconds = self.window_samples / SAMPLE_RATE
        index = []
        for i, (clip, _) in enumerate(self.clips):
            n = 1 if self._positive[i] else int(np.clip(clip.duration_seconds // window_seconds, 1, max_windows))
            index += [(i, j, n, "") for j in range(n)]
            if self._positive[i] and clip.source in REAL_SOURCES:
                index += [(i, 0, 1, kind) for kind in self.same_channel]
        return index

    def _build_banks(self) -> None:
        assert self.augment is not None
        if self.noise_bank is None:
            negatives = [i for i, positive in enumerate(self._positive) if not positive]
            rng = np.random.default_rng([self.seed, 0xBAB])
            chosen = rng.permutation(negatives)[:N_BABBLE_SOURCES] if not self.augment.noise_dirs else []
            self.noise_bank = build_noise_bank(self.augment, [self._audio(int(i))[0] for i in chosen])
        if self.rir_bank is None:
            self.rir_bank = build_rir_bank(self.augment, self.seed)

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh random placements/augmentations for a new epoch (reproducible per epoch)."""
        self.epoch = int(epoch)
        self._draws.clear()  # draws depend only on (seed, epoch, index): a resumed run repeats them exactly

    # ------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self._index)

    def _audio(self, clip_index: int) -> tuple[np.ndarray, tuple[int, int]]:
        """(audio (n_samples,), speech (start, end) samples), loaded once."""
        if clip_index not in self._cache:
            clip, root = self.clips[clip_index]
            path = Path(root) / clip.path
            if not path.exists():
                raise ManifestError(f"{root}: clip {clip.id} names missing audio file {clip.path}")
            audio = load_audio(path)
            self._cache[clip_index] = (audio, speech_bounds(audio))
        return self._cache[clip_index]

    def _rng(self, index: int) -> np.random.Generator:
        self._draws[index] += 1
        info = torch.utils.data.get_worker_info()
        base_seed = (info.seed - info.id) % 2**63 if info is not None else 0  # same for every worker of an epoch
        return np.random.default_rng([self.seed, self.epoch, index, self._draws[index], base_seed])

    def _gap(self, rng: np.random.Generator) -> int:
        low, high = self.end_gap_samples
        return int(rng.integers(low, high + 1)) if self.train else (low + high) // 2

    def _negative_window(
        self, audio: np.ndarray, end: int, window: int, n_windows: int, rng: np.random.Generator
    ) -> np.ndarray:
        size = self.window_samples
        if n_windows > 1:  # window `window` of n_windows even stretches over the clip
            span = (len(audio) - size) / n_windows
            start = window * span + (rng.uniform(0, span) if self.train else span / 2)
            return place_at(audio, -int(start), size)
        if not self.train or rng.random() < self.p_negative_end_aligned:
            return place_end(audio, end, size, self._gap(rng))
        return place_at(audio, int(rng.integers(min(0, size - len(audio)), max(0, size - len(audio)) + 1)), size)

    def _same_channel(self, clip_index: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A negative made from a real positive: (audio, speech end sample) for `kind` (SAME_CHANNEL_KINDS)."""
        audio, (start, end) = self._audio(clip_index)
        if kind == "background":
            margin = seconds_to_samples(SPEECH_MARGIN_SECONDS)
            rest = np.concatenate([audio[: max(0, start - margin)], audio[end + margin :]])
            if len(rest) >= seconds_to_samples(MIN_BACKGROUND_SECONDS):
                tiled = np.resize(rest, max(len(rest), self.window_samples))  # room tone, repeated to fill
                return tiled, len(tiled)
            kind = "reversed"
        if kind == "reversed":
            return audio[::-1].copy(), len(audio) - start
        low, high = CUT_FRACTION
        cut = start + int((rng.uniform(low, high) if self.train else (low + high) / 2) * (end - start))
        return (audio[:cut], cut) if kind == "cut-start" else (audio[cut:], end - cut)

    def window(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The window of item `index`, (window_samples,) float32, and the augmentation values applied."""
        clip_index, window, n_windows, kind = self._index[index]
        rng, applied = self._rng(index), {}
        if kind:
            audio, end = self._same_channel(clip_index, kind, rng)
            applied["same_channel"] = kind
        else:
            audio, (_, end) = self._audio(clip_index)
        if self.augment is not None:
            audio = augment_audio(
                audio, rng, self.augment, None, self.rir_bank, steps=("speed", "rir"), applied=applied
            )
            end = round(end / applied.get("speed", 1.0))
        if self._positive[clip_index] and not kind:
            out = place_end(audio, end, self.window_samples, self._gap(rng))
        else:
            out = self._negative_window(audio, end, window, n_windows, rng)
        if self.augment is not None:
            out = augment_audio(
                out, rng, self.augment, self.noise_bank, None, steps=("noise", "channel", "gain"), applied=applied
            )
        return out, applied

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        audio, _ = self.window(index)
        clip_index, _, _, kind = self._index[index]
        labels, mask = self._targets[clip_index]
        if kind:  # a same-channel negative: not the word, for every word its clip is labelled for
            labels = np.zeros_like(labels)
        return {
            "audio": torch.from_numpy(audio),
            "labels": torch.from_numpy(labels.copy()),
            "mask": torch.from_numpy(mask.copy()),
            "clip_id": self.clips[clip_index][0].id,
        }

    def counts(self) -> dict[str, dict[str, int]]:
        """Per wake word: positive and negative clips; clips masked out for a word are not counted."""
        out = {w: {"positive": 0, "negative": 0} for w in self.wake_words}
        for labels, mask in self._targets:
            for k, word in enumerate(self.wake_words):
                if mask[k]:
                    out[word]["positive" if labels[k] else "negative"] += 1
        for clip_index, _, _, kind in self._index:  # same-channel negatives count as negative clips
            for k, word in enumerate(self.wake_words):
                if kind and self._targets[clip_index][1][k]:
                    out[word]["negative"] += 1
        return out
