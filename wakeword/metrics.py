"""Detection metrics: false rejects on positive clips, false accepts per hour on long negative audio.

Conventions shared by every function here and by `wakeword.stream` (so evaluation counts exactly what
the live detector would report):

- A score track is one score per hop (a logit: any real number), shape (n_hops,), hop `i` scored every
  `hop_seconds`.
- A hop *fires* when `score >= threshold`.
- A *detection* happens at a rising edge: a firing hop whose previous hop did not fire (the hop before
  the first one counts as not firing). One sustained activation (consecutive firing hops, however long)
  is therefore one detection.
- A refractory period follows every detection: a rising edge less than `refractory_seconds` after the
  previous detection is ignored (it counts nothing and does not restart the period). In hops, the
  period is `refractory_hops = ceil(refractory_seconds / hop_seconds)`; a rising edge exactly that many
  hops after a detection triggers again.
- A clip's score is the maximum over its hops; a positive clip is rejected when its score < threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SECONDS_PER_HOUR = 3600.0

ScoreTracks = np.ndarray | Sequence[np.ndarray]


def probability(logits: np.ndarray | float) -> np.ndarray | float:
    """Display scale of a score: sigmoid in float64 (1 - p stays distinguishable up to logit ~36)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def logit(probability_: np.ndarray | float, eps: float = 1e-12) -> np.ndarray | float:
    """Inverse of `probability`, with p clipped to [eps, 1 - eps] so 0 and 1 map to finite logits."""
    p = np.clip(np.asarray(probability_, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def refractory_hops(refractory_seconds: float, hop_seconds: float) -> int:
    """Number of hops after a detection during which no new detection can start (>= 0)."""
    if refractory_seconds < 0 or hop_seconds <= 0:
        raise ValueError("need refractory_seconds >= 0 and hop_seconds > 0")
    # the small slack keeps 1.0 / 0.1 = 10.000000000000002 from becoming 11 hops
    return max(0, math.ceil(refractory_seconds / hop_seconds - 1e-9))


def detection_hops(scores: np.ndarray, threshold: float, hop_seconds: float, refractory_seconds: float) -> np.ndarray:
    """Hop indices (int64, ascending) where detections happen in a score track of shape (n_hops,)."""
    fires = np.asarray(scores, dtype=np.float64) >= threshold
    rising = np.flatnonzero(fires & ~np.concatenate(([False], fires[:-1])))
    if rising.size == 0:
        return rising.astype(np.int64)
    period = refractory_hops(refractory_seconds, hop_seconds)
    kept, next_allowed = [], -1
    for hop in rising.tolist():  # rising edges are few; only they need the sequential refractory rule
        if hop >= next_allowed:
            kept.append(hop)
            next_allowed = hop + period
    return np.asarray(kept, dtype=np.int64)


def _as_tracks(tracks: ScoreTracks) -> list[np.ndarray]:
    if isinstance(tracks, np.ndarray) and tracks.ndim == 1:
        return [tracks]
    return [np.asarray(track, dtype=np.float64).reshape(-1) for track in tracks]


def count_false_accepts(
    tracks: ScoreTracks, threshold: float, hop_seconds: float, refractory_seconds: float = 1.0
) -> int:
    """Detections in one negative score track (n_hops,) or a list of them (each counted separately)."""
    return sum(len(detection_hops(t, threshold, hop_seconds, refractory_seconds)) for t in _as_tracks(tracks))


def false_accepts_per_hour(
    tracks: ScoreTracks,
    threshold: float,
    hop_seconds: float,
    refractory_seconds: float = 1.0,
    duration_seconds: float | None = None,
) -> float:
    """False accepts per hour of negative audio.

    duration_seconds: the audio's total length; by default n_hops * hop_seconds over all tracks.
    """
    if duration_seconds is None:
        duration_seconds = sum(len(t) for t in _as_tracks(tracks)) * hop_seconds
    if duration_seconds <= 0:
        raise ValueError("false accepts per hour need negative audio of positive duration")
    n_false = count_false_accepts(tracks, threshold, hop_seconds, refractory_seconds)
    return n_false * SECONDS_PER_HOUR / duration_seconds


@dataclass(frozen=True)
class FalseAcceptRate:
    """False accepts counted in hours of negative audio, with the 95% interval of the rate per hour.

    The interval is the exact (Garwood) Poisson interval of the count; with no false accept at all it is
    the one-sided bound, so 0 in 2 minutes reads "below 90 per hour" (-ln 0.05 = 3.0 events / (1/30) h).
    """

    n_false: int
    hours: float
    per_hour: float
    low: float
    high: float

    def __str__(self) -> str:
        amount = f"{self.hours * 60:.1f} min" if self.hours < 1 else f"{self.hours:.2f} h"
        if self.n_false == 0:
            return f"0 false accepts in {amount}: below {self.high:.3g} per hour (95%)"
        return (
            f"{self.n_false} false accept{'s' * (self.n_false != 1)} in {amount}: {self.per_hour:.3g} per hour "
            f"(95% interval {self.low:.3g}-{self.high:.3g})"
        )


def fa_rate(n_false: int, hours: float, confidence: float = 0.95) -> FalseAcceptRate:
    """The rate per hour of `n_false` events in `hours`, with its Poisson interval (see FalseAcceptRate)."""
    from scipy.stats import chi2

    if hours <= 0:
        raise ValueError("a false-accept rate needs negative audio of positive duration")
    alpha = 1.0 - confidence
    if n_false == 0:
        low, high = 0.0, float(chi2.ppf(confidence, 2) / 2)
    else:
        low = float(chi2.ppf(alpha / 2, 2 * n_false) / 2)
        high = float(chi2.ppf(1 - alpha / 2, 2 * (n_false + 1)) / 2)
    return FalseAcceptRate(int(n_false), float(hours), n_false / hours, low / hours, high / hours)


def clip_scores(tracks: Sequence[np.ndarray]) -> np.ndarray:
    """One score per clip, the maximum over its hops: (n_clips,) from a list of (n_hops,) tracks."""
    return np.asarray([float(np.max(t)) if len(t) else 0.0 for t in tracks], dtype=np.float64)


def false_reject_rate(positive_scores: Sequence[float] | np.ndarray, threshold: float) -> float:
    """Fraction of positive clips (one score each) whose score is below the threshold."""
    scores = np.asarray(positive_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("false reject rate needs at least one positive clip")
    return float(np.mean(scores < threshold))


@dataclass(frozen=True)
class ClipRates:
    """Clip-level error rates at one threshold: far = negatives accepted, frr = positives rejected."""

    threshold: float
    far: float
    frr: float
    n_positive: int
    n_negative: int


def clip_error_rates(
    positive_scores: Sequence[float] | np.ndarray, negative_scores: Sequence[float] | np.ndarray, threshold: float
) -> ClipRates:
    """FAR (negative clips with score >= threshold) and FRR (positive clips with score < threshold)."""
    positives = np.asarray(positive_scores, dtype=np.float64)
    negatives = np.asarray(negative_scores, dtype=np.float64)
    far = float(np.mean(negatives >= threshold)) if negatives.size else 0.0
    frr = float(np.mean(positives < threshold)) if positives.size else 0.0
    return ClipRates(float(threshold), far, frr, int(positives.size), int(negatives.size))


def roc_auc(positive_scores: Sequence[float] | np.ndarray, negative_scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of clip scores: P(positive > negative), ties counting one half."""
    positives = np.asarray(positive_scores, dtype=np.float64)
    negatives = np.asarray(negative_scores, dtype=np.float64)
    if positives.size == 0 or negatives.size == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative clip")
    from scipy.stats import rankdata  # here: wakeword.runtime imports this module without scipy

    ranks = rankdata(np.concatenate([positives, negatives]))  # average ranks handle ties
    rank_sum = ranks[: positives.size].sum() - positives.size * (positives.size + 1) / 2
    return float(rank_sum / (positives.size * negatives.size))


@dataclass(frozen=True)
class DETCurve:
    """Detection error trade-off: FRR and FA/h at each threshold, all arrays of shape (n_thresholds,)."""

    thresholds: np.ndarray
    frr: np.ndarray
    fa_per_hour: np.ndarray

    def at(self, threshold: float) -> tuple[float, float]:
        """(frr, fa_per_hour) at the swept threshold nearest to `threshold`."""
        index = int(np.argmin(np.abs(self.thresholds - threshold)))
        return float(self.frr[index]), float(self.fa_per_hour[index])


def det_curve(
    positive_scores: Sequence[float] | np.ndarray,
    negative_tracks: ScoreTracks,
    hop_seconds: float,
    refractory_seconds: float = 1.0,
    thresholds: Sequence[float] | np.ndarray | None = None,
    duration_seconds: float | None = None,
) -> DETCurve:
    """FRR on positive clip scores (n_clips,) and FA/h on negative tracks over a threshold sweep.

    thresholds: ascending; by default 201 points over the range of all scores plus every positive clip
    score, so the FRR steps are exact (scores are logits: there is no fixed range).
    """
    tracks = _as_tracks(negative_tracks)
    if thresholds is None:
        positives = np.asarray(positive_scores, dtype=np.float64)
        every = np.concatenate([positives, *[t.astype(np.float64) for t in tracks]])
        grid = np.linspace(every.min(), every.max(), 201) if every.size else np.zeros(0)
        thresholds = np.unique(np.concatenate([grid, positives, [every.max() + 1e-6] if every.size else []]))
    sweep = np.sort(np.asarray(thresholds, dtype=np.float64))
    frr = np.array([false_reject_rate(positive_scores, t) for t in sweep])
    fa = np.array([false_accepts_per_hour(tracks, t, hop_seconds, refractory_seconds, duration_seconds) for t in sweep])
    return DETCurve(sweep, frr, fa)


def threshold_for_fa_per_hour(
    negative_tracks: ScoreTracks,
    target_fa_per_hour: float,
    hop_seconds: float,
    refractory_seconds: float = 1.0,
    duration_seconds: float | None = None,
) -> float:
    """The lowest threshold at which FA/h <= target, and stays <= target at every higher threshold.

    Tie rules: candidates are the distinct score values in the tracks (FA/h only changes there); hops
    equal to the returned threshold fire. FA/h is not always monotone in the threshold (raising it can
    split one activation into two), so the search walks down from the top and stops at the first
    candidate that exceeds the target. When even the highest score exceeds the target, the result is
    the next float above the highest score: nothing in these tracks fires.
    """
    if target_fa_per_hour < 0:
        raise ValueError("target_fa_per_hour must be >= 0")
    tracks = _as_tracks(negative_tracks)
    values = np.unique(np.concatenate(tracks)) if tracks else np.zeros(0)
    best = float(np.nextafter(values[-1], np.inf)) if values.size else 0.0
    for candidate in values[::-1]:
        fa = false_accepts_per_hour(tracks, candidate, hop_seconds, refractory_seconds, duration_seconds)
        if fa > target_fa_per_hour:
            break
        best = float(candidate)
    return best


def plot_det(curves: Mapping[str, DETCurve], path: str | Path, title: str = "DET curve") -> Path:
    """Write a PNG: FRR (%) against false accepts per hour, one line per named curve."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    try:
        for name, curve in curves.items():
            axes.step(curve.fa_per_hour, 100 * curve.frr, where="post", label=name)
        axes.set_xscale("symlog", linthresh=0.1)
        axes.set_xlabel("false accepts per hour")
        axes.set_ylabel("false reject rate (%)")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        if curves:
            axes.legend()
        figure.tight_layout()
        figure.savefig(path, format="png", dpi=120)
    finally:
        plt.close(figure)
    return path
