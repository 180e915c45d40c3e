"""ONNX export: the graph equals torch on real (TTS) speech windows, int8, runtime.json, refusals."""

import hashlib
import json

import numpy as np
import onnxruntime
import pytest
import torch

from wakeword.checkpoint import save_detector
from wakeword.cli import main
from wakeword.export import ExportError, MatMulConv1d, export_detector, front_end_nodes
from wakeword.features import stft_power, stft_power_frames
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig

WORDS = ("hey computer", "jarvis")


def make_model(
    tmp_path,
    family: str,
    encoder: dict | None = None,
    seed: int = 0,
    output_scale: float = 30.0,
    head: dict | None = None,
):
    """A randomly initialised detector saved as a model directory; BatchNorm statistics made non-trivial and
    the output layer scaled up, so logits vary over a few units like a trained model's."""
    torch.manual_seed(seed)
    config = DetectorConfig(
        family=family, wake_words=WORDS, encoder=encoder or {}, head=head or {}, thresholds={"jarvis": 0.7}
    )
    model = get_family(family).build_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    output = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        output.weight.mul_(output_scale)
    return save_detector(model, tmp_path / family), model.eval()


def speech_windows(tts, window_samples: int) -> np.ndarray:
    """(n, window_samples) float32: every 0.25 s window over two TTS sentences with silence around them."""
    silence = np.zeros(8000, np.float32)
    audio = np.concatenate([silence, tts("hey computer, play some music"), silence, tts("jarvis"), silence])
    starts = range(0, len(audio) - window_samples, 4000)
    return np.stack([audio[s : s + window_samples] for s in starts]).astype(np.float32)


def onnx_logits(folder, windows: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"audio": windows})[0]


def test_matmul_stft_equals_torch_stft(tts):
    audio = torch.from_numpy(np.stack([tts("jarvis")[:8000], 0.5 * np.random.default_rng(0).random(8000)]))
    expected, got = stft_power(audio.float()), stft_power_frames(audio.float()).transpose(1, 2)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4


@pytest.mark.parametrize("family", ["e2e", "e2e-valid-framing", "transfer"])
def test_float32_graph_equals_torch_on_speech(tmp_path, tts, tiny_whisper_dir, family):
    encoder = {"name": str(tiny_whisper_dir), "trainable": "head"} if family == "transfer" else None
    head = {"framing": "valid"} if family == "e2e-valid-framing" else None
    model_dir, model = make_model(tmp_path, family.split("-")[0], encoder, head=head)
    report = export_detector(model_dir, tmp_path / "export")
    windows = speech_windows(tts, model.config.window_samples)
    with torch.no_grad():
        expected = model(torch.from_numpy(windows)).numpy()
    got = onnx_logits(tmp_path / "export", windows)
    assert got.shape == (len(windows), 2)
    assert np.ptp(expected, axis=0).min() > 5e-3  # windows differ by 50x the tolerance: equality means something
    assert np.abs(got - expected).max() <= 1e-4
    assert report.max_abs_logit_difference <= 1e-4 and not report.int8


@pytest.mark.parametrize(("stride", "padding", "bias"), [(1, 1, True), (2, 1, True), (2, 0, False)])
def test_matmul_conv1d_equals_conv1d(stride, padding, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(8, 16, 3, stride=stride, padding=padding, bias=bias)
    x = torch.randn(2, 8, 31)
    with torch.no_grad():
        assert torch.allclose(MatMulConv1d(conv)(x), conv(x), atol=1e-5)


def test_runtime_json_describes_the_model(tmp_path):
    model_dir, model = make_model(tmp_path, "e2e")
    export_detector(model_dir, tmp_path / "export")
    meta = json.loads((tmp_path / "export" / "runtime.json").read_text())
    assert meta["words"] == list(WORDS) and meta["window_seconds"] == 1.5 and meta["hop_seconds"] == 0.1
    assert meta["thresholds"] == {"hey computer": model.config.threshold("hey computer"), "jarvis": 0.7}
    assert meta["threshold_scale"] in ("logit", "probability") and meta["quantization"] == "none"
    for name in ("config.json", "model.safetensors"):
        assert meta["source"]["sha256"][name] == hashlib.sha256((model_dir / name).read_bytes()).hexdigest()


def test_int8_quantises_weights_but_not_the_front_end(tmp_path, tts, tiny_whisper_dir):
    model_dir, model = make_model(tmp_path, "transfer", {"name": str(tiny_whisper_dir), "trainable": "head"})
    export_detector(model_dir, tmp_path / "fp32")
    report = export_detector(model_dir, tmp_path / "int8", int8=True, refine=False)
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and report.int8
    assert "Conv" not in ops  # whisper's two convolutions are matrix products (MatMulConv1d), quantised too
    assert len(front_end_nodes(tmp_path / "int8" / "model.onnx")) == 3  # the two DFT products and the mel product stay
    windows = speech_windows(tts, model.config.window_samples)
    fp32, int8 = onnx_logits(tmp_path / "fp32", windows), onnx_logits(tmp_path / "int8", windows)
    assert 0 < np.abs(fp32 - int8).max() < 0.1 * max(1.0, np.abs(fp32).max())
    meta = json.loads((tmp_path / "int8" / "runtime.json").read_text())
    assert meta["quantization"] == "int8-dynamic" and "refine" not in meta and meta["format_version"] == 1
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == ["model.onnx", "runtime.json"]
    # activations are quantised per call: the runtime scores an int8 graph one window a call, so a window's
    # score does not depend on the windows scored with it (a file scores as live listening does)
    from wakeword.runtime import load_runtime

    runtime = load_runtime(tmp_path / "int8", threads=1)
    loud = np.concatenate([windows, windows * 30.0])  # other windows with 30 times the range in the same call
    alone = np.concatenate([runtime.logits(w[None]) for w in windows])
    np.testing.assert_array_equal(runtime.logits(loud)[: len(windows)], alone)
    session_batch = runtime.session.run(None, {"audio": loud.astype(np.float32)})[0][: len(windows)]
    assert not np.array_equal(session_batch, alone.astype(np.float32))  # what one call for all would have given


def test_export_replaces_an_export_but_refuses_other_folders(tmp_path):
    model_dir, _ = make_model(tmp_path, "e2e")
    export_detector(model_dir, tmp_path / "export")
    first = (tmp_path / "export" / "model.onnx").stat().st_mtime_ns
    export_detector(model_dir, tmp_path / "export", int8=True)
    assert (tmp_path / "export" / "model.onnx").stat().st_mtime_ns != first
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["model.fp32.onnx", "model.onnx", "runtime.json"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="other"):
        export_detector(model_dir, tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left behind


def test_phoneme_family_says_why_it_cannot_export(tmp_path, capsys):
    config = DetectorConfig(family="phoneme", wake_words=("hey computer",))
    model_dir = save_detector(get_family("phoneme").build_model(config), tmp_path / "phoneme")
    assert main(["export", str(model_dir), "--out", str(tmp_path / "export")]) == 2
    error = capsys.readouterr().err
    assert "phoneme family cannot be exported" in error and "PocketSphinx" in error
    assert not (tmp_path / "export").exists()


def test_cli_export(tmp_path, capsys):
    model_dir, _ = make_model(tmp_path, "e2e")
    assert main(["export", str(model_dir), "--out", str(tmp_path / "export"), "--int8"]) == 0
    assert "int8 model.onnx" in capsys.readouterr().out
    assert (tmp_path / "export" / "model.onnx").is_file()


def test_export_traces_the_encoder_not_the_onnxruntime_frames(tmp_path, tts, tiny_whisper_dir, monkeypatch):
    """The frozen encoder runs in onnxruntime for training and scoring (wakeword.encoders.onnx_frames); while
    `wakeword export` traces the model it must stay in torch, or the graph would hold one window's frames as a
    constant and ignore its audio input (seen with whisper-tiny.en: "Invalid input name: audio")."""
    from wakeword.encoders import onnx_frames

    calls = []
    real = onnx_frames.onnx_frames

    def spy(module, n_samples):
        calls.append(torch.onnx.is_in_onnx_export())
        return real(module, n_samples)

    monkeypatch.setattr(onnx_frames, "onnx_frames", spy)
    monkeypatch.delenv(onnx_frames.BACKEND_ENV, raising=False)
    model_dir, model = make_model(tmp_path, "transfer", {"name": str(tiny_whisper_dir), "trainable": "head"})
    windows = speech_windows(tts, model.config.window_samples)
    with torch.no_grad():
        expected = model(torch.from_numpy(windows)).numpy()
    export_detector(model_dir, tmp_path / "export")
    assert True not in calls  # never asked for onnxruntime frames while exporting
    assert np.abs(onnx_logits(tmp_path / "export", windows) - expected).max() <= 1e-3


def test_int8_refined_decides_as_float32(tmp_path, tts, tiny_whisper_dir):
    """int8 + refine: windows within the margin of a threshold get the float32 graph's logits, the others
    keep int8's and stay below every threshold, so every decision is float32's wherever int8 moves a logit by
    less than the margin; lower thresholds given to the streaming detector widen what is re-scored."""
    from wakeword.runtime import RUNTIME_FILE, load_runtime, streaming_detector

    encoder = {"name": str(tiny_whisper_dir), "trainable": "head"}
    model_dir, model = make_model(tmp_path, "transfer", encoder, output_scale=300.0)  # logits spread ~1
    report = export_detector(model_dir, tmp_path / "int8", int8=True)
    assert report.float_files == ("model.fp32.onnx",)
    meta = json.loads((tmp_path / "int8" / RUNTIME_FILE).read_text())
    assert meta["format_version"] == 3 and meta["refine"]["graphs"] == {"model.onnx": "model.fp32.onnx"}
    speech = speech_windows(tts, model.config.window_samples)
    noise = 0.3 * np.random.default_rng(0).standard_normal(speech[:2].shape).astype(np.float32)
    windows = np.concatenate([speech, np.zeros_like(speech[:2]), noise])
    with torch.no_grad():
        fp32 = model(torch.from_numpy(windows)).numpy()
    session = load_runtime(tmp_path / "int8", threads=1).session  # the int8 graph with the runtime's options
    int8 = np.concatenate([session.run(None, {"audio": w[None]})[0] for w in windows])  # a window a call, as runtime
    error = np.abs(int8 - fp32).max()
    # the margin is the tiny model's: 1.2 times its largest int8 change (a trained whisper-tiny's is 4 logits)
    margin = 1.2 * float(error)
    # word 0's threshold just under its top window; word 1's far above every window
    thresholds = {WORDS[0]: float(fp32[:, 0].max()) - 0.05, WORDS[1]: float(fp32[:, 1].max()) + 100.0}
    assert np.ptp(fp32[:, 0]) > margin + 0.2 and error > 1e-3  # some windows are far from it; int8 does move logits
    meta |= {"thresholds": thresholds, "refine": {**meta["refine"], "margin_logits": margin}}
    (tmp_path / "int8" / RUNTIME_FILE).write_text(json.dumps(meta))
    runtime = load_runtime(tmp_path / "int8", threads=1)
    got = runtime.logits(windows)
    near = int8[:, 0] >= thresholds[WORDS[0]] - margin
    assert 0 < near.sum() == runtime.refined_windows < len(windows)
    np.testing.assert_allclose(got[near], fp32[near], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got[~near], int8[~near])
    for k, threshold in enumerate(thresholds.values()):
        np.testing.assert_array_equal(got[:, k] >= threshold, fp32[:, k] >= threshold)
    # a streaming detector run at lower thresholds re-scores near those too; the floor never rises
    streaming_detector(runtime, {WORDS[0]: thresholds[WORDS[0]] - 2.0, WORDS[1]: thresholds[WORDS[1]] + 5.0})
    expected_floor = np.array([thresholds[WORDS[0]] - 2.0, thresholds[WORDS[1]]]) - margin
    np.testing.assert_allclose(runtime.refine_floor, expected_floor, rtol=0, atol=1e-4)
