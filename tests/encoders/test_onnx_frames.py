"""The onnxruntime backend of frozen encoders: the same frames as torch, used only where it is safe."""

import copy

import numpy as np
import pytest
import torch

from wakeword.encoders import build_encoder
from wakeword.encoders import onnx_frames as backend
from wakeword.export import check_windows
from wakeword.models.base import DetectorConfig
from wakeword.models.transfer import TransferDetector


def _windows(n: int, n_samples: int = 24000) -> torch.Tensor:
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((n, n_samples)) * np.geomspace(0.001, 0.5, n)[:, None]
    return torch.from_numpy(audio.astype(np.float32))


@pytest.fixture
def frozen(tiny_whisper_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(backend.BACKEND_ENV, raising=False)
    encoder = build_encoder(str(tiny_whisper_dir))
    encoder.set_trainable("head")
    return encoder


def test_frozen_encoder_runs_in_onnxruntime_with_torchs_frames(frozen, tmp_path):
    audio = _windows(12)
    frames = frozen.encode(audio)
    runner = backend.onnx_frames(frozen, audio.shape[-1])
    assert runner is not None and list((tmp_path / "cache" / "onnx-encoders").glob("*.onnx"))
    with torch.no_grad():
        expected = frozen(audio)
    assert frames.shape == expected.shape and frames.dtype == torch.float32
    torch.testing.assert_close(frames, expected, atol=1e-4, rtol=0)
    # a window's frames do not depend on the batch it came in
    torch.testing.assert_close(frozen.encode(audio[3:4]), frames[3:4], atol=1e-5, rtol=0)


def test_trainable_encoder_and_backend_off_use_torch(frozen, monkeypatch):
    calls = []
    monkeypatch.setattr(backend, "onnx_frames", lambda *a: calls.append(a))  # would be used if asked
    trainable = copy.deepcopy(frozen)
    trainable.set_trainable("top-k", 1)
    trainable.encode(_windows(2))
    assert calls == []
    monkeypatch.undo()
    monkeypatch.setenv(backend.BACKEND_ENV, "torch")
    assert backend.onnx_frames(frozen, 24000) is None


def test_a_graph_that_disagrees_with_torch_falls_back_to_torch(frozen, monkeypatch):
    monkeypatch.setattr(backend, "CHECK_TOLERANCE", -1.0)  # every check fails
    monkeypatch.setattr(backend, "_failed", set())  # (remembered for the process: not for later tests)
    audio = _windows(3)
    with pytest.warns(UserWarning, match="encoding with torch"):
        frames = frozen.encode(audio)
    with torch.no_grad():
        torch.testing.assert_close(frames, frozen(audio), atol=0, rtol=0)  # torch's own frames


def test_frozen_transfer_detector_scores_through_onnxruntime(tiny_whisper_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    config = DetectorConfig(family="transfer", wake_words=("hey",),
                            encoder={"name": str(tiny_whisper_dir), "trainable": "head"})  # fmt: skip
    detector = TransferDetector(config)
    audio = _windows(5)
    got = detector.score(audio)
    assert backend.onnx_frames(detector.encoder, 24000) is not None
    monkeypatch.setenv(backend.BACKEND_ENV, "torch")
    torch.testing.assert_close(got, detector.score(audio), atol=1e-4, rtol=0)


def test_whisper_tiny_en_frames_match_torch(wakeword_cache):
    """The real encoder: onnxruntime's and torch's float32 frames are both within 1e-3 of a float64 reference
    (frames reach ~12, so 1e-4 relative; the float16 frame cache rounds them to ~4e-3), and of each other.
    How close depends on the CPU's kernels: torch's own float32 frames were 5.0e-4 from float64 on an AVX2-only
    AMD EPYC, a few 1e-4 on an AVX-512 machine."""
    encoder = build_encoder("whisper-tiny.en")
    encoder.set_trainable("head")
    audio = torch.cat([_windows(6), torch.from_numpy(check_windows(24000))])
    frames = encoder.encode(audio).double()
    with torch.no_grad():
        torch32 = encoder(audio).double()
        float64 = copy.deepcopy(encoder).double()(audio.double())
    assert (frames - torch32).abs().max() < 1e-3
    assert (frames - float64).abs().max() < 1e-3 and (torch32 - float64).abs().max() < 1e-3
