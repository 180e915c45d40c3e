import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from wakeword.audio import SAMPLE_RATE
from wakeword.encoders import Encoder, build_encoder
from wakeword.encoders.speech_embedding import (
    EMBEDDING_FILE,
    INT16_SCALE,
    MEL_FILE,
    SpeechEmbeddingError,
    onnx_dir,
    rewrite_mel_graph,
)


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("speech-embedding")


def onnxruntime_embeddings(audio: np.ndarray) -> np.ndarray:
    """The reference: the unmodified ONNX graphs, one clip and one 76-frame window at a time, stride 8
    (openWakeWord's pipeline). (n_samples,) -> (n_frames, 96)."""
    mel = ort.InferenceSession(str(onnx_dir() / MEL_FILE))
    cnn = ort.InferenceSession(str(onnx_dir() / EMBEDDING_FILE))
    spec = mel.run(None, {"input": (audio * INT16_SCALE)[None].astype(np.float32)})[0][0, 0] / 10 + 2
    windows = np.stack([spec[i : i + 76] for i in range(0, len(spec) - 76 + 1, 8)])[..., None]
    return cnn.run(None, {"input_1": windows})[0][:, 0, 0]


@pytest.fixture(scope="module")
def clips(tts):
    """Two 1.5 s clips, loud and 50 dB quieter, ending in digital silence: the mel graph's 80 dB floor
    below the maximum must be taken per clip, or the quiet clip's spectrum is cut off by the loud one."""
    n_samples = int(1.5 * SAMPLE_RATE)
    loud, quiet = (np.pad(a[:n_samples], (0, max(0, n_samples - len(a)))) for a in (tts("hey computer"), tts("door")))
    return np.stack([loud, quiet * 0.003]).astype(np.float32)


def test_matches_onnxruntime_window_by_window(encoder, clips):
    frames = encoder.encode(torch.from_numpy(clips)).numpy()
    assert frames.shape == (2, encoder.n_frames(clips.shape[1]), 96) == (2, 9, 96)
    for clip, got in zip(clips, frames, strict=True):
        reference = onnxruntime_embeddings(clip)
        assert np.abs(got - reference).max() <= 1e-4 * np.abs(reference).max()
    assert np.abs(frames[0] - frames[1]).max() > 1.0  # speech and noise differ: not a constant output


def test_is_an_encoder_and_rejects_too_short_audio(encoder):
    assert isinstance(encoder, Encoder) and encoder.name == "speech-embedding" and encoder.dim == 96
    assert encoder.n_frames(2 * SAMPLE_RATE) == 16
    with pytest.raises(ValueError, match="at least 12512 samples"):
        encoder(torch.zeros(1, 12000))


def test_freeze_strategies_and_gradients(encoder, clips):
    encoder.set_trainable("head")
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.set_trainable("top-k", 2)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {f"embedding.model/conv2d_{i}/Conv2D.{w}" for i in (18, 19) for w in ("weight", "bias")} - {
        "embedding.model/conv2d_19/Conv2D.bias"  # the last convolution has no bias
    }
    encoder(torch.from_numpy(clips)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in encoder.named_parameters() if n in trainable)
    encoder.set_trainable("full")
    frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("mel.") for n in frozen)  # the fixed STFT/mel front end never learns
    encoder.zero_grad(set_to_none=True)
    encoder.set_trainable("head")


def test_state_dict_reloads_into_a_fresh_conversion(encoder):
    fresh = build_encoder("speech-embedding")
    assert fresh.load_state_dict(encoder.state_dict(), strict=True) is not None


def test_mel_rewrite_refuses_a_graph_it_does_not_know():
    graph = rewrite_mel_graph(onnx.load(str(onnx_dir() / MEL_FILE)))
    with pytest.raises(SpeechEmbeddingError, match="expected one dynamic Clip and one ReduceMax, found 0, 1"):
        rewrite_mel_graph(graph, "already-rewritten.onnx")
