"""Family `cascade`: a cheap first stage on every hop, the accurate second stage only where its gate opens.

One model directory and one `Detector` to every caller (streaming, `score`, `evaluate`, `mine`, the app).
config.json keeps both stages as complete, self-describing detector configs under `head`:

    head: {stage1: {family: e2e, ...}, stage2: {family: transfer, ...},
           gate: {logits: {word: gate logit}, unseen_margin: 1.0, ...},
           distillation: {weight, temperature}}

and model.safetensors holds both stages' weights under the prefixes `stage1.` and `stage2.` (stage 2's
frozen pretrained encoder is rebuilt from its config, as for a transfer model saved alone).

Which hops stage 2 scores: exactly the hops whose stage-1 logit reaches the gate of any word. No
neighbouring hop is needed: the detection rule (`wakeword.metrics`: rising edge of score >= threshold,
refractory period, the activation's peak and last firing hop) reads only WHICH hops are at or above the
threshold and the scores of those hops. An unseen hop is forced below the threshold, so the cascade's
detections equal stage 2's whenever every hop on which stage 2 reaches its threshold passes the gate; the
gate is calibrated on exactly that set (every firing hop, not only each activation's onset).

The rule for a hop stage 2 did not see (per word): score = min(stage-1 logit, threshold - unseen_margin).
So an unseen hop is never reported at or above the detector's own threshold, and scores below the
threshold still order hops by the cheap model's belief (DET curves, mining near misses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wakeword.models.base import Detector, DetectorConfig, evaluating, masked_bce, strided_windows


def _settings(cls: type, data: dict[str, Any], what: str) -> Any:
    """cls(**data), refusing keys the dataclass does not have (a typo in config.json must not pass silently)."""
    unknown = set(data) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown cascade {what} setting(s) {sorted(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class GateSettings:
    """The gate between the stages (saved under head.gate)."""

    logits: dict[str, float] = field(default_factory=dict)  # per word: stage-1 logit at which stage 2 runs
    unseen_margin: float = 1.0  # an unseen hop scores at most threshold - unseen_margin (logits)
    recall: float | None = None  # stage-1 recall of stage-2 firing hops on the calibration audio
    calibration: dict[str, Any] = field(default_factory=dict)  # what the gate was set on (call rates, ...)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateSettings:
        return _settings(cls, data, "gate")


@dataclass(frozen=True)
class DistillSettings:
    """How stage 1 learns from stage 2 (saved under head.distillation)."""

    weight: float = 0.7  # share of the loss from stage 2's soft targets; the rest from the labels
    temperature: float = 2.0  # both logits are divided by it before the soft cross-entropy

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillSettings:
        return _settings(cls, data, "distillation")


def stage_config(config: DetectorConfig, name: str) -> DetectorConfig:
    """The sub-config of stage `name` ("stage1" or "stage2") stored in a cascade config's head."""
    data = config.head.get(name)
    if not isinstance(data, dict):
        raise ValueError(f"cascade config needs head.{name}: a complete detector config of that stage")
    stage = DetectorConfig.from_dict({"format_version": config.format_version, **data})
    if stage.family == "cascade":
        raise ValueError(f"head.{name}: a cascade stage cannot itself be a cascade")
    if tuple(stage.wake_words) != tuple(config.wake_words):
        raise ValueError(f"head.{name} has wake words {list(stage.wake_words)}, the cascade {list(config.wake_words)}")
    if abs(stage.hop_seconds - config.hop_seconds) > 1e-9 or stage.window_seconds > config.window_seconds + 1e-9:
        raise ValueError(f"head.{name}: a stage must share the hop and fit in the cascade's window")
    return stage


class CascadeDetector(Detector):
    """Stage 1 scores every window; stage 2 only the windows whose stage-1 logit reaches a word's gate.

    stage2_windows counts the windows stage 2 has scored since construction (benchmarks: share of hops).
    """

    family = "cascade"
    # On silence and noise a live hop is stage 1 alone, and most of its cost is fixed per call (new frames, the
    # graph call, streaming's bookkeeping): three hops per call took the hour of noise from 0.0052 to 0.0026 of
    # a core (Intel Xeon, one thread), at most 0.2 s later (benchmarks/latency.py --hops-per-call 3)
    live_hops_per_call = 3

    def __init__(self, config: DetectorConfig, stage1: Detector | None = None, stage2: Detector | None = None) -> None:
        super().__init__(config)
        from wakeword.models import get_family

        configs = {name: stage_config(config, name) for name in ("stage1", "stage2")}
        if abs(configs["stage2"].window_seconds - config.window_seconds) > 1e-9:
            raise ValueError("head.stage2 must use the cascade's window (it scores the whole window)")
        self.stage1 = stage1 or get_family(configs["stage1"].family).build_model(configs["stage1"])
        self.stage2 = stage2 or get_family(configs["stage2"].family).build_model(configs["stage2"])
        self.gate = GateSettings.from_dict(config.head.get("gate", {}))
        self.distillation = DistillSettings.from_dict(config.head.get("distillation", {}))
        self.stage2_windows = 0
        self._cached_limits: tuple | None = None

    @property
    def stage1_samples(self) -> int:
        """Stage 1 reads the last `stage1_samples` of each window (its own, possibly shorter, window)."""
        return self.stage1.config.window_samples

    def gate_logits(self) -> torch.Tensor:
        """(n_words,) gate per word; a word never calibrated has gate -inf (stage 2 always runs)."""
        return torch.from_numpy(self._limits()[0].copy())

    def unseen_ceiling(self) -> torch.Tensor:
        """(n_words,) the highest score an unseen hop may get: threshold - unseen_margin (logits)."""
        return torch.from_numpy(self._limits()[1].copy())

    def _limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(gate logits, unseen ceiling) float32, made again only when the gate or the config is replaced (a live
        hop would otherwise build both on every call)."""
        cached = self._cached_limits  # (gate settings, config, gate logits, unseen ceiling)
        if cached is None or cached[0] is not self.gate or cached[1] is not self.config:
            gate = np.array([self.gate.logits.get(w, float("-inf")) for w in self.wake_words], np.float32)
            ceiling = np.array(
                [self.config.threshold(w) - self.gate.unseen_margin for w in self.wake_words], np.float32
            )
            cached = self._cached_limits = (self.gate, self.config, gate, ceiling)
        return cached[2], cached[3]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (batch, window_samples) float32 16 kHz -> logits (batch, n_words)."""
        first = self.stage1(audio[:, -self.stage1_samples :])
        cut = lambda opened: audio[torch.from_numpy(opened).to(audio.device)]  # noqa: E731
        return torch.from_numpy(self._gated(first.detach().cpu().numpy(), cut)).to(first.device)

    @torch.no_grad()
    def score_strided(self, signal: torch.Tensor, hop_samples: int) -> torch.Tensor:
        """Detector.score_strided: stage 1 over the strided windows' ends (sharing its frames where its family
        can), stage 2 only on the windows whose gate opens (cut from signal only then)."""
        if len(signal) < self.config.window_samples:
            raise ValueError(f"a signal of {len(signal)} samples holds no window of {self.config.window_samples}")
        stage1_span = signal[self.config.window_samples - self.stage1_samples :]
        with evaluating(self):
            first = self.stage1.score_strided(stage1_span, hop_samples).detach().cpu().numpy()

            def cut(opened: np.ndarray) -> torch.Tensor:
                windows = strided_windows(signal, self.config.window_samples, hop_samples)
                return windows[torch.from_numpy(opened).to(signal.device)].contiguous()

            return torch.from_numpy(self._gated(first, cut)).to(signal.device)

    def strided_logits_numpy(self, signal: np.ndarray, hop_samples: int) -> np.ndarray | None:
        """Detector.strided_logits_numpy: where stage 1 has a numpy path (an e2e stage 1 with framing "valid"),
        a live call uses no torch tensor until a gate opens; else None."""
        if self.training or len(signal) < self.config.window_samples:
            return None
        first = self.stage1.strided_logits_numpy(
            signal[self.config.window_samples - self.stage1_samples :], hop_samples
        )
        if first is None:
            return None

        def cut(opened: np.ndarray) -> torch.Tensor:
            windows = np.lib.stride_tricks.sliding_window_view(signal, self.config.window_samples)[::hop_samples]
            return torch.from_numpy(np.ascontiguousarray(windows[opened]))

        with torch.no_grad():
            return self._gated(first, cut)

    def _gated(self, first: np.ndarray, cut: Callable[[np.ndarray], torch.Tensor]) -> np.ndarray:
        """Stage-1 logits (n, n_words) of n windows -> the cascade's logits (n, n_words) float32 numpy.
        cut(opened) gives the windows (n_opened, window_samples) whose gate opened, for stage 2: only called
        when one did (a live hop on silence cuts none)."""
        gate, ceiling = self._limits()  # numpy (n_words,): a live hop's few comparisons cost less than torch ops
        opened = (first >= gate).any(axis=1)
        scores = np.minimum(first, ceiling)
        if opened.any():
            self.stage2_windows += int(opened.sum())
            scores[opened] = self.stage2(cut(opened)).detach().cpu().numpy()
        return scores

    def saved_state(self) -> dict[str, torch.Tensor]:
        """Both stages' stored weights, prefixed by stage (stage 2 without a frozen pretrained encoder)."""
        state: dict[str, torch.Tensor] = {}
        for name, stage in (("stage1", self.stage1), ("stage2", self.stage2)):
            own = stage.saved_state() if hasattr(stage, "saved_state") else stage.state_dict()
            state.update({f"{name}.{key}": value for key, value in own.items()})
        return state


def build_model(config: DetectorConfig) -> CascadeDetector:
    return CascadeDetector(config)


def compute_loss(model: CascadeDetector, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Distillation of stage 2 into stage 1 (stage 2 is frozen and its scores precomputed).

    batch: audio (B, window_samples); teacher (B, n_words) stage-2 logits; labels, mask (B, n_words) where
    mask is 0 for unlabelled audio (then only the teacher teaches); optional pos_weight (n_words,).
    Loss = weight * BCE(stage1 / T, sigmoid(teacher / T)) + (1 - weight) * masked BCE(stage1, labels).
    """
    logits = model.stage1(batch["audio"][:, -model.stage1_samples :])
    settings = model.distillation
    soft = torch.sigmoid(batch["teacher"].to(logits) / settings.temperature)
    distilled = torch.nn.functional.binary_cross_entropy_with_logits(logits / settings.temperature, soft)
    labelled = masked_bce(logits, batch["labels"], batch["mask"], batch.get("pos_weight"))
    return settings.weight * distilled + (1.0 - settings.weight) * labelled
