"""Family `e2e`: a small CNN trained from scratch, audio -> label, on exactly the data the transfer model gets.

The seeds' point of comparison: end-to-end learning needs much data, so with a handful of clips this
family should lose to the transfer family. The network is TC-ResNet style (Choi et al., 2019): the
80 mel bins are the input channels of 1-D convolutions over time, so each layer sees the whole spectrum
and the model stays small and fast on a CPU (about 140k parameters at the default width, the limit
is 300k). Input: the shared Whisper-compatible log-mel front end (wakeword.features.log_mel).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from wakeword.audio import HOP_LENGTH, N_MELS
from wakeword.features import (
    log_mel,
    n_valid_frames,
    normalise_log_mel,
    valid_log_mel,
)
from wakeword.frames import SharedFrames, frame_windows, log_mel_frames
from wakeword.models.base import Detector, DetectorConfig, evaluating, masked_bce
from wakeword.models.onnx_eval import EvalGraph

FRAMINGS = ("centred", "valid")
MAX_PARAMETERS = 300_000  # the family is "small": a larger network would only overfit small sets harder


@dataclass(frozen=True)
class E2ESettings:
    """Architecture of the CNN (saved under `head` in config.json)."""

    channels: tuple[int, ...] = (24, 32, 48)  # per stage; each stage halves the time resolution
    blocks_per_stage: int = 2  # residual blocks per stage (the first one downsamples)
    width: float = 1.0  # multiplies every channel count (TC-ResNet14 at the defaults; 1.5 exceeds the limit)
    stem_channels: int = 16
    kernel_size: int = 9  # temporal kernel, 90 ms of frames
    dropout: float = 0.2  # before the output layer
    n_freq_masks: int = 2  # SpecAugment while training: masks of up to `freq_mask_bins` mel bins
    freq_mask_bins: int = 8
    n_time_masks: int = 2  # ... and of up to `time_mask_frames` frames
    time_mask_frames: int = 10
    # "centred": log_mel's Whisper frames (reflect-padded at the window's edges); "valid": only the frames wholly
    # inside the window, so overlapping streaming windows share their frames (score_strided computes each once)
    framing: str = "centred"

    @classmethod
    def from_dict(cls, data: dict) -> E2ESettings:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown e2e head setting(s) {sorted(unknown)}")
        data = {**data, "channels": tuple(data["channels"])} if "channels" in data else dict(data)
        settings = cls(**data)
        if settings.framing not in FRAMINGS:
            raise ValueError(f"e2e framing must be one of {list(FRAMINGS)}, not {settings.framing!r}")
        return settings

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    def scaled(self, n_channels: int) -> int:
        return max(1, round(n_channels * self.width))


class ResidualBlock(nn.Module):
    """Two temporal convolutions with a shortcut; (batch, c_in, T) -> (batch, c_out, ceil(T / stride))."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel_size, stride, pad, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(),
            nn.Conv1d(c_out, c_out, kernel_size, 1, pad, bias=False),
            nn.BatchNorm1d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def spec_augment(mel: torch.Tensor, settings: E2ESettings) -> torch.Tensor:
    """Zero random bands of mel bins and spans of frames in each example; mel: (batch, n_mels, n_frames)."""
    batch, n_mels, n_frames = mel.shape
    keep = torch.ones_like(mel)
    for axis, n_masks, max_width, size in (
        (1, settings.n_freq_masks, settings.freq_mask_bins, n_mels),
        (2, settings.n_time_masks, settings.time_mask_frames, n_frames),
    ):
        positions = torch.arange(size, device=mel.device)
        for _ in range(n_masks):
            width = torch.randint(0, max_width + 1, (batch, 1), device=mel.device)
            start = (torch.rand(batch, 1, device=mel.device) * (size - width + 1)).long()
            inside = (positions >= start) & (positions < start + width)  # (batch, size)
            keep = keep * (~inside).float().unsqueeze(3 - axis)
    return mel * keep


class E2EDetector(Detector):
    """Log-mel (batch, 80, T) -> TC-ResNet -> average and max pooling over time -> one logit per word."""

    family = "e2e"

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.settings = E2ESettings.from_dict(config.head)
        s = self.settings
        self.input_norm = nn.BatchNorm1d(N_MELS)  # learned per-bin normalisation of the log-mel input
        stem = s.scaled(s.stem_channels)
        self.stem = nn.Sequential(nn.Conv1d(N_MELS, stem, 3, 1, 1, bias=False), nn.BatchNorm1d(stem), nn.ReLU())
        blocks, c_in = [], stem
        for channels in s.channels:
            c_out = s.scaled(channels)
            for index in range(s.blocks_per_stage):
                blocks.append(ResidualBlock(c_in, c_out, s.kernel_size, stride=2 if index == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(s.dropout)
        self._shared_frames = SharedFrames(log_mel_frames)  # streaming's consecutive spans share frames (not saved)
        # scoring's network in onnxruntime (a live hop: 0.09 ms where torch's ~40 small ops take 0.38; not saved)
        self._scoring_graph = EvalGraph(_normalised_network, (N_MELS, n_valid_frames(config.window_samples)))
        self.output = nn.Linear(2 * c_in, len(config.wake_words))
        n_parameters = sum(p.numel() for p in self.parameters())
        if n_parameters > MAX_PARAMETERS:
            raise ValueError(
                f"e2e head settings give {n_parameters} parameters; the family's limit is {MAX_PARAMETERS}"
            )

    def forward_features(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (batch, n_mels, n_frames) -> logits (batch, n_words)."""
        if self.training:
            mel = spec_augment(mel, self.settings)
        x = self.blocks(self.stem(self.input_norm(mel)))
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        return self.output(self.dropout(pooled))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (batch, window_samples) float32 16 kHz -> logits (batch, n_words)."""
        return self.forward_features(valid_log_mel(audio) if self.settings.framing == "valid" else log_mel(audio))

    @torch.no_grad()
    def score_strided(self, signal: torch.Tensor, hop_samples: int) -> torch.Tensor:
        """Detector.score_strided; with framing "valid" the frames of the whole signal are computed once and
        each window takes its slice (a 3.2 s streaming block: 4.2 s of frames instead of 32 windows' worth), and
        the frames the previous call's signal shares with this one are reused (a live hop: 10 new frames)."""
        if not self._shares_frames(hop_samples) or signal.device.type != "cpu":
            return super().score_strided(signal, hop_samples)
        windows = self._valid_windows(signal.detach().float().numpy(), hop_samples)  # (n, n_mels, frames)
        with evaluating(self):
            logits = self._scoring_graph(self, windows)
            if logits is not None:
                return torch.from_numpy(logits)
            return _normalised_network(self, torch.from_numpy(windows).to(self.output.weight))

    def strided_logits_numpy(self, signal: np.ndarray, hop_samples: int) -> np.ndarray | None:
        """Detector.strided_logits_numpy: the shared frames and onnxruntime's graph (torch where the graph cannot
        serve), as score_strided, in eval mode on the CPU with framing "valid"; else None."""
        if self.training or not self._shares_frames(hop_samples) or self.output.weight.device.type != "cpu":
            return None
        windows = self._valid_windows(signal, hop_samples)
        logits = self._scoring_graph(self, windows)
        if logits is None:  # here, not in score_strided: the frames just taken from the cache are not made twice
            with torch.no_grad():
                logits = _normalised_network(self, torch.from_numpy(windows).to(self.output.weight)).numpy()
        return logits

    def _shares_frames(self, hop_samples: int) -> bool:
        return self.settings.framing == "valid" and hop_samples % HOP_LENGTH == 0

    def _valid_windows(self, signal: np.ndarray, hop_samples: int) -> np.ndarray:
        """(n_samples,) float32 -> each strided window's log-mel frames (n_windows, n_mels, frames), unnormalised."""
        n_windows = (len(signal) - self.config.window_samples) // hop_samples + 1
        overlap = self.config.window_samples - hop_samples
        frames = self._shared_frames(signal, overlap)  # (n_mels, n_frames)
        return frame_windows(frames, self.config.window_samples, hop_samples, n_windows)


def _normalised_network(model: E2EDetector, power: torch.Tensor) -> torch.Tensor:
    """log10 mel power of whole windows (batch, n_mels, n_frames) -> logits (batch, n_words)."""
    return model.forward_features(normalise_log_mel(power))


def build_model(config: DetectorConfig) -> E2EDetector:
    return E2EDetector(config)


def compute_loss(model: E2EDetector, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Masked BCE over the words each clip is labelled for.

    batch: audio (B, window_samples), labels (B, n_words) 0/1, mask (B, n_words), optional pos_weight (n_words,).
    """
    logits = model(batch["audio"])
    return masked_bce(logits, batch["labels"], batch["mask"], batch.get("pos_weight"))
