"""Family `transfer`: a pretrained speech-recognition encoder + a new multi-layer detection head.

Freeze strategies (config.encoder["trainable"]):
- "head":  encoder frozen, only the new head learns. Encoder outputs can be cached, so training takes
           seconds. Use with little data (a few to a few dozen real clips): the seeds' rule.
- "top-k": the last `top_k` encoder layers learn too. Use with hundreds of clips.
- "full":  everything is fine-tuned. Use with thousands of clips, or the head overfits the encoder.
"""

from __future__ import annotations

import torch

from wakeword.encoders import build_encoder
from wakeword.models.base import Detector, DetectorConfig, masked_bce
from wakeword.models.head import HeadEnsemble, HeadSettings, build_head

FREEZE_STRATEGIES = ("head", "top-k", "full")


class TransferDetector(Detector):
    family = "transfer"

    def __init__(self, config: DetectorConfig, encoder: torch.nn.Module | None = None) -> None:
        super().__init__(config)
        trainable = config.encoder.get("trainable", "head")
        if trainable not in FREEZE_STRATEGIES:
            raise ValueError(f"encoder.trainable must be one of {FREEZE_STRATEGIES}, got {trainable!r}")
        if "name" not in config.encoder:
            raise ValueError("transfer detector config needs encoder.name (e.g. 'whisper-tiny.en')")
        self.encoder = encoder or build_encoder(config.encoder["name"], config.encoder.get("revision"))
        self.encoder.set_trainable(trainable, int(config.encoder.get("top_k", 0)))
        self.head = build_head(self.encoder.dim, len(config.wake_words), HeadSettings.from_dict(config.head))

    @property
    def encoder_frozen(self) -> bool:
        """True when encoder outputs can be computed once and cached for training the head."""
        return self.config.encoder.get("trainable", "head") == "head"

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (batch, n_samples) -> encoder frames (batch, n_frames, dim)."""
        if self.encoder_frozen:
            # eval mode (dropout off in a frozen encoder, even while the head trains), no autograd; Whisper's
            # runs in onnxruntime on the CPU (wakeword.encoders.onnx_frames)
            return self.encoder.encode(audio)
        return self.encoder(audio)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Encoder frames (batch, n_frames, dim) -> logits (batch, n_words)."""
        return self.head(frames)

    def forward(self, inputs: torch.Tensor, members: bool = False) -> torch.Tensor:
        """audio (batch, n_samples), or cached encoder frames (batch, n_frames, dim) -> logits (batch, n_words);
        with members=True, each head member's own logits (n_members, batch, n_words) (one member for one head).

        Accepting frames here (not only in forward_features), and the members switch, keep training going
        through forward(), which distributed wrappers (DDP) need to synchronise gradients."""
        frames = inputs if inputs.dim() == 3 else self.encode(inputs)
        if not members:
            return self.forward_features(frames)
        return self.head.member_logits(frames) if isinstance(self.head, HeadEnsemble) else self.head(frames)[None]

    def saved_state(self) -> dict[str, torch.Tensor]:
        """What the model directory stores: only the head when the pretrained encoder was not changed
        (the encoder is rebuilt from config.encoder), everything otherwise."""
        state = self.state_dict()
        if self.encoder_frozen:
            state = {k: v for k, v in state.items() if k.startswith("head.")}
        return state


def build_model(config: DetectorConfig) -> TransferDetector:
    return TransferDetector(config)


def compute_loss(model: TransferDetector, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Masked BCE; the batch holds either raw `audio` or cached encoder `features`. An ensemble head's
    members each learn on their own loss (mean over members), not on their mean logit: trained jointly they
    would act as one wider head and lose the independence that makes averaging them pay. Anchor members
    (head.n_anchor_members, the last ones) skip the windows of the user's recordings (batch["recorded"] = 1)."""
    inputs = batch["features"] if "features" in batch else batch["audio"]
    member_logits = model(inputs, members=True)
    n_anchor = getattr(getattr(model, "module", model).head, "n_anchor_members", 0)  # unwrapped from DDP
    not_recorded = 1.0 - batch["recorded"][:, None] if "recorded" in batch else 1.0
    losses = []
    for i, logits in enumerate(member_logits):
        mask = batch["mask"] * not_recorded if i >= len(member_logits) - n_anchor else batch["mask"]
        losses.append(masked_bce(logits, batch["labels"], mask, batch.get("pos_weight")))
    return torch.stack(losses).mean()
