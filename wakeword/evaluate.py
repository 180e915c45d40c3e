"""Evaluating a detector on clips the way it runs live: each clip is streamed through the same window
and feature code as `wakeword listen`, and the metrics of `wakeword.metrics` are applied.

Protocol: a clip is preceded by one window of silence (its start is not cut) and followed by
AFTER_SECONDS of silence; optionally mixed with background noise at a given SNR of active speech.
A clip's score is the maximum over its hops. FA/h counts detections over the negative clips taken
as one stream of their total duration.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from wakeword.audio import SAMPLE_RATE, load_audio
from wakeword.data.augment import coloured_noise, fit_length, mix_at_snr
from wakeword.data.clips import AUDIO_SUFFIXES
from wakeword.metrics import (
    count_false_accepts,
    det_curve,
    fa_rate,
    false_reject_rate,
    plot_det,
    roc_auc,
    threshold_for_fa_per_hour,
)
from wakeword.models.base import Detector, DetectorConfig
from wakeword.stream import score_array

AFTER_SECONDS = 0.5  # silence after a clip, so a word ending at the clip's end is still seen whole


@dataclass(frozen=True)
class Scored:
    """One clip's labels, duration and score track (n_hops, n_words) of logits.

    padded_seconds: silence scored after the clip (score_clip adds AFTER_SECONDS; long audio none)."""

    labels: Mapping[str, int]
    duration_seconds: float
    track: np.ndarray
    padded_seconds: float = AFTER_SECONDS


@dataclass
class WordReport:
    """One word's FRR and false accepts at a threshold (logit scale). FA/h is always given with its 95%
    Poisson interval (fa_per_hour_low, fa_per_hour_high) from the count and the hours of negatives."""

    threshold: float
    frr: float
    fa_per_hour: float
    roc_auc: float | None
    n_positive: int
    n_negative: int
    negative_hours: float
    n_false_accepts: int = 0
    fa_per_hour_low: float = float("nan")
    fa_per_hour_high: float = float("nan")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WordReport:
        """From a saved report (report.json, config.json); keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def false_accepts(self) -> str:
        """ "3 false accepts in 30.0 min: 6 per hour (95% interval 1.24-17.5)" or "... below 90 per hour"."""
        if self.negative_hours <= 0:
            return "no negative audio"
        if self.fa_per_hour_high != self.fa_per_hour_high:  # NaN: saved before intervals were recorded
            return f"{self.fa_per_hour:.2f} per hour in {self.negative_hours * 60:.1f} min (no interval recorded)"
        return str(fa_rate(self.n_false_accepts, self.negative_hours))

    def summary(self) -> str:
        auc = "n/a" if self.roc_auc is None else f"{self.roc_auc:.3f}"
        return (
            f"FRR {self.frr:.1%} ({self.n_positive} positives); {self.false_accepts()}; "
            f"threshold {self.threshold:.2f} (logit); ROC AUC {auc}"
        )


class NoiseMixer:
    """Mixes background noise into clips at a fixed SNR (dB of active speech over noise), seeded."""

    def __init__(self, snr_db: float, noise_files: Sequence[Path] = (), seed: int = 0) -> None:
        self.snr_db, self.rng = snr_db, np.random.default_rng(seed)
        self.noises = [load_audio(p) for p in noise_files]

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if self.noises:
            noise = fit_length(self.noises[int(self.rng.integers(len(self.noises)))], len(audio), self.rng)
        else:
            noise = coloured_noise(len(audio), "pink", self.rng)
        return mix_at_snr(audio, noise, self.snr_db)


def score_clip(detector: Detector, audio: np.ndarray, mixer: NoiseMixer | None = None) -> np.ndarray:
    """Score track (n_hops, n_words) of one clip (n_samples,) as the streaming detector sees it."""
    before = np.zeros(detector.config.window_samples, np.float32)
    after = np.zeros(int(AFTER_SECONDS * SAMPLE_RATE), np.float32)
    padded = np.concatenate([before, audio, after])
    if mixer is not None:
        padded = mixer(padded)
    return score_array(detector, padded)[1]


def score_items(
    detector: Detector,
    items: Iterable[tuple[np.ndarray | Path, Mapping[str, int]]],
    mixer: NoiseMixer | None = None,
    desc: str = "scoring",
) -> list[Scored]:
    """Score (audio or file, labels) items; files are loaded one at a time."""
    scored = []
    for audio, labels in tqdm(list(items), desc=desc, leave=False):
        audio = load_audio(audio) if isinstance(audio, (str, Path)) else audio
        scored.append(Scored(dict(labels), len(audio) / SAMPLE_RATE, score_clip(detector, audio, mixer)))
    return scored


def _split(scored: Sequence[Scored], words: Sequence[str], word: str) -> tuple[list[float], list[np.ndarray], float]:
    k = list(words).index(word)
    positives = [float(s.track[:, k].max()) for s in scored if s.labels.get(word) == 1]
    negatives = [s.track[:, k] for s in scored if s.labels.get(word) == 0]
    seconds = sum(s.duration_seconds + s.padded_seconds for s in scored if s.labels.get(word) == 0)
    return positives, negatives, seconds


def word_report(
    config: DetectorConfig, scored: Sequence[Scored], word: str, threshold: float, refractory_seconds: float
) -> WordReport:
    """FRR on positive clips, FA/h on negative clips, ROC AUC of clip scores, at `threshold`."""
    positives, negatives, seconds = _split(scored, config.wake_words, word)
    n_false = count_false_accepts(negatives, threshold, config.hop_seconds, refractory_seconds) if negatives else 0
    rate = fa_rate(n_false, seconds / 3600) if negatives and seconds > 0 else None
    auc = roc_auc(positives, [t.max() for t in negatives]) if positives and negatives else None
    frr = false_reject_rate(positives, threshold) if positives else float("nan")
    nan = float("nan")
    return WordReport(
        float(threshold), frr, rate.per_hour if rate else nan, auc, len(positives), len(negatives), seconds / 3600,
        n_false, rate.low if rate else nan, rate.high if rate else nan,
    )  # fmt: skip


def calibrate(
    config: DetectorConfig, scored: Sequence[Scored], target_fa_per_hour: float, refractory_seconds: float
) -> dict[str, float]:
    """Per word, the lowest threshold whose FA/h on the negative clips stays at or under the target
    (the configured threshold where there are no negatives to calibrate on)."""
    thresholds = {}
    for word in config.wake_words:
        _, negatives, seconds = _split(scored, config.wake_words, word)
        thresholds[word] = (
            threshold_for_fa_per_hour(negatives, target_fa_per_hour, config.hop_seconds, refractory_seconds, seconds)
            if negatives
            else config.threshold(word)
        )
    return thresholds


def write_det_plot(
    config: DetectorConfig, scored: Sequence[Scored], path: Path, refractory_seconds: float, title: str
) -> Path | None:
    """DET curve PNG (FRR vs FA/h), one line per word that has positives and negatives."""
    curves = {}
    for word in config.wake_words:
        positives, negatives, seconds = _split(scored, config.wake_words, word)
        if positives and negatives:
            curves[word] = det_curve(
                positives, negatives, config.hop_seconds, refractory_seconds, duration_seconds=seconds
            )
    return plot_det(curves, path, title=title) if curves else None


def audio_files(folder: str | Path) -> list[Path]:
    """Audio files under a folder (recursively), sorted; a missing folder is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of audio files")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _some_audio_files(folder: str | Path, what: str = "") -> list[Path]:
    """audio_files, refusing a folder with none: an empty positives folder would report FRR as NaN, and an
    empty noise folder would silently fall back to pink noise."""
    files = audio_files(folder)
    if not files:
        extensions = " ".join(AUDIO_SUFFIXES)
        raise FileNotFoundError(f"{folder}: no audio files ({extensions}){f' for {what}' if what else ''}")
    return files


def evaluate_folders(
    detector: Detector,
    positives: str | Path,
    negatives: str | Path,
    word: str | None = None,
    snr_db: float | None = None,
    noise_dir: str | Path | None = None,
    target_fa_per_hour: float | None = None,
    refractory_seconds: float = 1.0,
    plot: str | Path | None = None,
    seed: int = 0,
) -> dict:
    """`wakeword evaluate`: FRR / FA/h / AUC of one word on folders of positive and negative recordings.

    The threshold is the model's own, or, with target_fa_per_hour, the one that meets it on these negatives.
    """
    config = detector.config
    word = word or config.wake_words[0]
    if word not in config.wake_words:
        raise ValueError(f"the model has no word {word!r} (it has {list(config.wake_words)})")
    if noise_dir and snr_db is None:  # the noise would silently go unused
        raise ValueError("a noise folder (--noise) needs the SNR to mix it at (--snr-db)")
    noise_files = _some_audio_files(noise_dir, "--noise") if noise_dir else []
    mixer = None if snr_db is None else NoiseMixer(snr_db, noise_files, seed)
    positive_files, negative_files = _some_audio_files(positives), _some_audio_files(negatives)
    items = [(p, {word: 1}) for p in positive_files] + [(p, {word: 0}) for p in negative_files]
    scored = score_items(detector, items, mixer, desc="evaluating")
    threshold = config.threshold(word)
    if target_fa_per_hour is not None:
        threshold = calibrate(config, scored, target_fa_per_hour, refractory_seconds)[word]
    report = {
        "word": word,
        "snr_db": snr_db,
        **asdict(word_report(config, scored, word, threshold, refractory_seconds)),
    }
    if plot:
        report["plot"] = str(write_det_plot(config, scored, Path(plot), refractory_seconds, f"DET: {word}"))
    return report


def dump(report: dict) -> str:
    return json.dumps(report, indent=2, default=float)
