"""What every detector family shares: its self-describing config and the scoring interface.

A detector maps fixed windows of audio to one logit per wake word. Streaming, scoring, evaluation,
the app and the trainer use only this interface, so every family is measured by the same code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from wakeword.audio import HOP_SECONDS, SAMPLE_RATE, WINDOW_SECONDS, WindowTiming
from wakeword.metrics import logit, probability  # noqa: F401  (re-exported: the score scale)

FORMAT_VERSION = 2  # 2: thresholds on the logit scale (1: probabilities, converted on load)


@dataclass(frozen=True)
class DetectorConfig(WindowTiming):
    """Everything needed to rebuild a detector besides its weights (saved as config.json)."""

    family: str
    wake_words: tuple[str, ...]
    window_seconds: float = WINDOW_SECONDS
    hop_seconds: float = HOP_SECONDS
    sample_rate: int = SAMPLE_RATE
    encoder: dict[str, Any] = field(default_factory=dict)  # {name, revision, trainable}
    head: dict[str, Any] = field(default_factory=dict)  # family-specific architecture settings
    thresholds: dict[str, float] = field(default_factory=dict)  # per word, on the LOGIT scale (see score)
    calibration: dict[str, Any] = field(default_factory=dict)  # {target_fa_per_hour, measured_on, ...}
    training: dict[str, Any] = field(default_factory=dict)  # {recipe, data counts, metrics}
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.wake_words:
            raise ValueError("a detector needs at least one wake word")
        if self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"sample_rate must be {SAMPLE_RATE}, got {self.sample_rate}")
        if not 0 < self.hop_seconds <= self.window_seconds:
            raise ValueError("need 0 < hop_seconds <= window_seconds")

    def threshold(self, word: str) -> float:
        """The word's calibrated threshold on the logit scale (0.0, i.e. probability 0.5, if never calibrated)."""
        return float(self.thresholds.get(word, 0.0))

    def replace(self, **changes: Any) -> DetectorConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["wake_words"] = list(self.wake_words)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}")
        return cls(**{**data, "wake_words": tuple(data["wake_words"])})


class Detector(torch.nn.Module):
    """Base class of all families. Subclasses set `family` and implement `forward`."""

    family: ClassVar[str] = ""
    # hops `listen` scores per call unless told otherwise: one, the lowest latency, where a hop's own work
    # dominates its cost (families whose per-call overhead dominates, the cascade, ask for more)
    live_hops_per_call: ClassVar[int] = 1

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def wake_words(self) -> tuple[str, ...]:
        return self.config.wake_words

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (batch, window_samples) float32 16 kHz -> logits (batch, n_words)."""
        raise NotImplementedError

    @torch.no_grad()
    def score(self, audio: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_words) for windows of audio (batch, window_samples).

        Scores and thresholds live on the logit scale: a float32 probability is exactly 1.0 for every
        logit above ~17, so two confident windows could not be told apart, nor a threshold set between
        them. `probability()` gives the display scale."""
        with evaluating(self):
            return self(audio)

    @torch.no_grad()
    def score_strided(self, signal: torch.Tensor, hop_samples: int) -> torch.Tensor:
        """Logits (n_windows, n_words) of the windows of signal (n_samples,) that start every hop:
        window k is signal[k * hop_samples : k * hop_samples + window_samples], and
        n_windows = (n_samples - window_samples) // hop_samples + 1.

        Streaming scores its overlapping windows through this call; a family that can share work between
        them overrides it, with results equal to `score` of the windows up to float32 rounding."""
        return self.score(strided_windows(signal, self.config.window_samples, hop_samples).contiguous())

    def strided_logits_numpy(self, signal: np.ndarray, hop_samples: int) -> np.ndarray | None:
        """score_strided without torch tensors, for a live stream on the CPU: signal (n_samples,) float32 numpy ->
        logits (n_windows, n_words) float32 numpy, or None where this family (or this call: training mode,
        weights off the CPU, no onnxruntime) has no such path; streaming then calls score_strided.

        A cascade's stage 1 costs about 0.3 ms a live call, and the tensors and context managers of the torch
        path around it took another 0.15-0.2 ms."""
        return None


def strided_windows(signal: torch.Tensor, window_samples: int, hop_samples: int) -> torch.Tensor:
    """The windows (n_windows, window_samples) of signal (n_samples,) every hop_samples, as a view."""
    if len(signal) < window_samples:
        raise ValueError(f"a signal of {len(signal)} samples holds no window of {window_samples}")
    return signal.unfold(0, window_samples, hop_samples)


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """module.eval() inside the block, its earlier mode restored after it.

    A module already in eval mode is left alone: train()/eval() visit every submodule (a Whisper stage 2 has
    hundreds), which cost a live cascade more than its stage 1's convolutions."""
    if not module.training:
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def masked_bce(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy over the labels a clip has (multi-task learning with partial labels).

    logits, labels, mask: (batch, n_words); mask is 1 where the clip is labelled for that word.
    pos_weight: (n_words,) weight of positive examples (class balancing). Returns a scalar: the mean
    over labelled entries, so an unlabelled word contributes neither loss nor gradient.
    """
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels, pos_weight=pos_weight, reduction="none"
    )
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)
