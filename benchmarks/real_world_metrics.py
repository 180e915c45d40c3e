"""Scores from cached encoder frames, and the metrics of the real-world benchmark (issue 17 item 4).

Two score scales are kept apart on purpose:
- LOGIT: the head's output, float64 here. Every threshold search and ranking metric (FRR at a FAR or FA/h,
  ROC AUC) uses logits, so nothing ties at a saturated 1.000.
- PROBABILITY: sigmoid(logit). Computed in float64 for the ">= 0.999" counts (display scale), and in float32
  by torch exactly as `Detector.score` does where a model's own threshold is on the probability scale (old
  config.json files), so "above the model's own threshold" counts what the shipped detector would accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import chi2

from wakeword.metrics import count_false_accepts, roc_auc, threshold_for_fa_per_hour
from wakeword.models.base import Detector

REFRACTORY_SECONDS = 1.0
SATURATED_PROBABILITY = 0.999  # the "scores 1.000" count


@torch.no_grad()
def head_logits(model: Detector, frames: np.ndarray, word: str, batch: int = 256) -> np.ndarray:
    """Logits (n_windows,) float64 of `word` from cached frames (n_windows, n_frames, dim) of any float dtype."""
    k = model.config.wake_words.index(word)
    out = [np.zeros(0)]
    for start in range(0, len(frames), batch):
        chunk = torch.from_numpy(np.asarray(frames[start : start + batch], dtype=np.float32))
        out.append(model.forward_features(chunk)[:, k].double().numpy())
    return np.concatenate(out)


def probability64(logits: np.ndarray) -> np.ndarray:
    """Display-scale probability, float64 (saturates only far beyond float32's 1.000)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def probability32(logits: np.ndarray) -> np.ndarray:
    """The probability Detector.score returns: torch.sigmoid of the float32 logit, as float64 values."""
    return torch.sigmoid(torch.from_numpy(np.asarray(logits, dtype=np.float32))).double().numpy()


@dataclass(frozen=True)
class OwnThreshold:
    """A model's calibrated threshold and the scale it is on ("probability" or "logit")."""

    value: float
    scale: str

    @classmethod
    def of(cls, model: Detector, word: str) -> OwnThreshold:
        """Format version 1 configs (the trainer before issue 17) store probabilities; a config that says
        calibration.scale == "logit", or a newer format, stores logits."""
        config = model.config
        logit = config.calibration.get("scale") == "logit" or config.format_version > 1
        return cls(config.threshold(word), "logit" if logit else "probability")

    def on_scale(self, logits: np.ndarray) -> np.ndarray:
        """Scores on this threshold's scale, computed as the detector computes them."""
        return np.asarray(logits, np.float64) if self.scale == "logit" else probability32(logits)


def garwood(count: int, hours: float) -> tuple[float, float]:
    """Exact 95% Poisson interval (chi-square, Garwood 1936) of a rate per hour from `count` events."""
    low = 0.0 if count == 0 else chi2.ppf(0.025, 2 * count) / 2
    high = chi2.ppf(0.975, 2 * count + 2) / 2
    return float(low / hours), float(high / hours)


def frr_at_clip_far(positives: np.ndarray, negatives: np.ndarray, far: float) -> float:
    """FRR at the threshold that accepts at most `far` of the negative clips (accept = score > threshold)."""
    threshold = np.quantile(negatives, 1.0 - far, method="higher")
    return float(np.mean(positives <= threshold))


def clip_metrics(
    positives: np.ndarray, negatives: np.ndarray, kinds: Sequence[str], own: OwnThreshold
) -> dict[str, object]:
    """Clip-level metrics from clip logits (max over hops): positives (n_pos,), negatives (n_neg,)."""
    kinds = np.asarray(kinds)
    accepted = own.on_scale(negatives) >= own.value
    saturated = probability64(negatives) >= SATURATED_PROBABILITY
    by_kind = {
        str(k): {"n": int(np.sum(kinds == k)), "above_own": int(np.sum(accepted & (kinds == k))),
                 "p_ge_0999": int(np.sum(saturated & (kinds == k)))}
        for k in sorted(set(kinds.tolist()))
    }  # fmt: skip
    return {
        "clip_frr_at_1pct_far": frr_at_clip_far(positives, negatives, 0.01),
        "clip_frr_at_5pct_far": frr_at_clip_far(positives, negatives, 0.05),
        "clip_roc_auc": roc_auc(positives, negatives),
        "n_neg_clips": len(negatives),
        "n_neg_above_own": int(accepted.sum()),
        "n_neg_p_ge_0999": int(saturated.sum()),
        "neg_by_kind": by_kind,
        "frr_own_clip": float(np.mean(own.on_scale(positives) < own.value)),
    }


def stream_fa(track: np.ndarray, threshold: float, hop: float, seconds: float) -> dict[str, float]:
    """False accepts on the stream at a threshold on the track's scale, with the 95% interval per hour."""
    count = count_false_accepts(track, threshold, hop, REFRACTORY_SECONDS)
    hours = seconds / 3600.0
    low, high = garwood(count, hours)
    return {"fa_count": int(count), "fa_per_hour": count / hours, "fa_per_hour_95": [low, high]}


def stream_metrics(
    positives: np.ndarray, track: np.ndarray, hop: float, seconds: float, own: OwnThreshold
) -> dict[str, object]:
    """FRR on positive clip logits at the stream thresholds of 0.5 and 1 FA/h, and at the model's own one.

    track: the stream's logits per hop (n_hops,); seconds: the stream's duration."""
    out: dict[str, object] = {"stream_hours": seconds / 3600.0}
    for target, name in ((0.5, "0.5"), (1.0, "1")):
        threshold = threshold_for_fa_per_hour(track, target, hop, REFRACTORY_SECONDS, seconds)
        out[f"at_{name}_fah"] = {
            "threshold_logit": threshold,
            "frr": float(np.mean(positives < threshold)),
            **stream_fa(track, threshold, hop, seconds),
        }
    own_track = own.on_scale(track)
    out["at_own"] = {
        "threshold": own.value,
        "scale": own.scale,
        "frr": float(np.mean(own.on_scale(positives) < own.value)),
        **stream_fa(own_track, own.value, hop, seconds),
    }
    return out
