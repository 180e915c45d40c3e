"""Export of the two-stage detector: two graphs plus the gate in runtime.json, run by the torch-free runtime
with CascadeDetector's rule (stage 2 only where the gate opens, the same score for the windows it skips)."""

import json
import zipfile

import numpy as np
import pytest
import torch
from test_export import speech_windows

from wakeword.checkpoint import load_detector, save_detector
from wakeword.cli import main
from wakeword.export import export_detector, zip_export
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig
from wakeword.models.cascade import CascadeDetector
from wakeword.runtime import RuntimeModelError, load_runtime, read_runtime_config, streaming_detector
from wakeword.runtime import detect_file as runtime_detect_file
from wakeword.stream import detect_file, score_array

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("hey computer", "jarvis")


def _stage(family: str, window_seconds: float, seed: int, **fields) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = DetectorConfig(family=family, wake_words=WORDS, window_seconds=window_seconds, **fields)
    return get_family(family).build_model(config).eval()


def _spread(model: torch.nn.Module, windows: np.ndarray, width: float, centre: np.ndarray) -> np.ndarray:
    """Rescale the last Linear layer so each word's logits on `windows` span `width` around the median
    `centre` (n_words,); returns the new logits. A random network's logits vary by about 1e-3; stretched
    further than this, float32 rounding in the encoder would be stretched past the 1e-4 tolerance too."""
    with torch.no_grad():
        logits = model(torch.from_numpy(windows)).numpy()
        output = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        scale = width / np.ptp(logits, axis=0)
        output.weight.mul_(torch.from_numpy(scale).float()[:, None])  # new = scale * (old - median) + centre
        output.bias.mul_(torch.from_numpy(scale).float()).add_(
            torch.from_numpy(centre - scale * np.median(logits, axis=0)).float()
        )
        return model(torch.from_numpy(windows)).numpy()


def _gap(values: np.ndarray, low: float, high: float) -> float:
    """The middle of the widest gap between sorted `values` within their [low, high] quantiles: a cut no
    window is near, so float32 differences between torch and onnxruntime cannot move a window across it."""
    ordered = np.sort(values)
    a, b = int(low * len(ordered)), int(high * len(ordered))
    i = a + int(np.argmax(np.diff(ordered[a:b])))
    return float((ordered[i] + ordered[i + 1]) / 2)


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory, tts, tiny_whisper_dir, speech):
    """A tiny cascade (e2e stage 1 on 1.0 s, transfer stage 2 on a tiny random Whisper) whose gates pass
    about half of the speech file's hops and whose thresholds make events; its folder and loaded model."""
    stage1 = _stage("e2e", 1.0, 1, head={"channels": [8, 12, 16], "blocks_per_stage": 1})
    encoder = {"name": str(tiny_whisper_dir), "trainable": "head"}
    stage2 = _stage("transfer", 1.5, 2, encoder=encoder, head={"hidden": [16]})
    windows = np.array(score_windows(speech[1]))
    second = _spread(stage2, windows, 0.05, np.zeros(len(WORDS)))
    first = _spread(stage1, windows[:, -16000:], 0.1, np.zeros(len(WORDS)))
    gates = {w: _gap(first[:, i], 0.4, 0.7) for i, w in enumerate(WORDS)}  # about half the hops open
    thresholds = {w: _gap(second[:, i], 0.8, 0.95) for i, w in enumerate(WORDS)}
    head = {
        "stage1": stage1.config.replace(thresholds=thresholds).to_dict(),
        "stage2": stage2.config.replace(thresholds=thresholds).to_dict(),
        "gate": {"logits": gates, "unseen_margin": 0.02},
    }
    config = DetectorConfig(family="cascade", wake_words=WORDS, head=head, thresholds=thresholds)
    cascade = CascadeDetector(config, stage1=stage1, stage2=stage2).eval()
    root = tmp_path_factory.mktemp("cascade")
    return save_detector(cascade, root / "cascade"), load_detector(root / "cascade")


def score_windows(audio: np.ndarray) -> list[np.ndarray]:
    """The streaming detector's 1.5 s windows over `audio`, one per 0.1 s hop."""
    from wakeword.scoring import clip_windows

    return list(clip_windows(DetectorConfig(family="e2e", wake_words=WORDS), audio))


def test_float32_cascade_export_scores_and_gates_as_torch(cascade_dir, tmp_path, speech, tts):
    model_dir, cascade = cascade_dir
    report = export_detector(model_dir, tmp_path / "export")
    assert report.files == ("stage1.onnx", "stage2.onnx")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["runtime.json", "stage1.onnx", "stage2.onnx"]
    runtime = load_runtime(tmp_path / "export", threads=1)
    assert runtime.config.cascade is not None and runtime.config.cascade.stage1_window_seconds == 1.0
    windows = np.concatenate([np.array(score_windows(speech[1])), speech_windows(tts, 24000)])
    cascade.stage2_windows = 0
    with torch.no_grad():
        expected = cascade(torch.from_numpy(windows)).numpy()
    got = runtime.logits(windows)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # the gate mattered: stage 2 scored some windows and skipped others, the same ones in both
    assert 0 < runtime.stage2_windows == cascade.stage2_windows < len(windows)
    # and it listens as the torch cascade does: three hops per call unless told otherwise
    assert runtime.live_hops_per_call == cascade.live_hops_per_call == 3
    first = cascade.stage1(torch.from_numpy(windows[:, -16000:])).detach().numpy()
    skipped = (first < cascade.gate_logits().numpy()).all(axis=1)
    ceiling = cascade.unseen_ceiling().numpy()
    assert (expected[skipped] <= ceiling).all() and (expected[skipped] == np.minimum(first, ceiling)[skipped]).all()


def test_cascade_runtime_events_equal_torch(cascade_dir, tmp_path, speech):
    model_dir, _ = cascade_dir
    export_detector(model_dir, tmp_path / "export")
    torch_events = list(detect_file(load_detector(model_dir), speech[0]))
    onnx_events = list(runtime_detect_file(load_runtime(tmp_path / "export", threads=1), speech[0]))
    assert len(torch_events) >= 2
    key = lambda e: (e.word, e.time_seconds, e.start_seconds, e.end_seconds)  # noqa: E731
    assert [key(e) for e in onnx_events] == [key(e) for e in torch_events]
    for onnx_event, torch_event in zip(onnx_events, torch_events, strict=True):
        assert onnx_event.score == pytest.approx(torch_event.score, abs=1e-4)
    _, torch_scores = score_array(load_detector(model_dir), speech[1])
    assert (torch_scores >= np.array(list(load_detector(model_dir).config.thresholds.values()))).any()


def test_a_frame_sharing_stage1_streams_from_log_mel_frames_in_the_runtime_as_in_torch(cascade_dir, tmp_path, speech):
    """A stage 1 with framing "valid" exports a third graph, log-mel frames -> logits: the runtime computes the
    frames with numpy as torch does, keeps those consecutive hops share, and scores every hop as torch does."""
    _, cascade = cascade_dir
    stage1 = _stage("e2e", 1.0, 3, head={"channels": [8, 12, 16], "blocks_per_stage": 1, "framing": "valid"})
    windows = np.array(score_windows(speech[1]))
    first = _spread(stage1, windows[:, -16000:], 0.1, np.zeros(len(WORDS)))
    gates = {w: _gap(first[:, i], 0.4, 0.7) for i, w in enumerate(WORDS)}  # about half the hops open
    head = {**cascade.config.head, "gate": {"logits": gates, "unseen_margin": 0.02}}
    head["stage1"] = stage1.config.replace(thresholds=cascade.config.thresholds).to_dict()
    framed = CascadeDetector(cascade.config.replace(head=head), stage1=stage1, stage2=cascade.stage2).eval()
    report = export_detector(save_detector(framed, tmp_path / "framed"), tmp_path / "export")
    assert (
        report.files == ("stage1.onnx", "stage2.onnx", "stage1.logmel.onnx") and report.max_abs_logit_difference < 1e-4
    )
    runtime = load_runtime(tmp_path / "export", threads=1)
    assert runtime.config.cascade.stage1_log_mel_file == "stage1.logmel.onnx"
    framed.stage2_windows = 0
    _, expected = score_array(framed, speech[1])
    streamer = streaming_detector(runtime)
    hop = streamer.hop_samples
    got = np.concatenate([streamer.process(speech[1][i : i + hop]).scores for i in range(0, len(speech[1]), hop)])
    got = np.concatenate([got, streamer.flush().scores])  # one 0.1 s hop per call, as listening
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert runtime._stage1_frames._last is not None  # stage 1 ran from the shared frames, not from the audio graph
    assert 0 < runtime.stage2_windows == framed.stage2_windows < len(expected)  # the same hops opened the gate
    names = sorted(zipfile.ZipFile(zip_export(tmp_path / "export", tmp_path / "e.zip")).namelist())
    assert names == ["export/runtime.json", "export/stage1.logmel.onnx", "export/stage1.onnx", "export/stage2.onnx"]


def test_cascade_runtime_json_and_int8(cascade_dir, tmp_path, speech, capsys):
    model_dir, cascade = cascade_dir
    assert main(["export", str(model_dir), "--out", str(tmp_path / "int8"), "--int8"]) == 0
    assert "stage1.onnx + stage2.onnx, float32 stage2.fp32.onnx" in capsys.readouterr().out
    meta = json.loads((tmp_path / "int8" / "runtime.json").read_text())
    assert meta["format_version"] == 3 and meta["family"] == "cascade" and meta["quantization"] == "int8-dynamic"
    assert meta["refine"]["graphs"] == {"stage2.onnx": "stage2.fp32.onnx"}  # stage 1 stays float32
    assert meta["cascade"]["gate_logits"] == cascade.gate.logits and meta["cascade"]["unseen_margin"] == 0.02
    assert meta["cascade"]["stage1"]["window_seconds"] == 1.0 and meta["cascade"]["stage2"]["file"] == "stage2.onnx"
    windows = np.array(score_windows(speech[1]))
    cascade.stage2_windows = 0
    with torch.no_grad():
        expected = cascade(torch.from_numpy(windows)).numpy()
    runtime = load_runtime(tmp_path / "int8", threads=1)
    got = runtime.logits(windows)
    # stage 1 is float32, so the gate opens where torch's does: stage 2 scores the same windows
    assert 0 < runtime.stage2_windows == cascade.stage2_windows < len(windows)
    assert runtime.refined_windows == runtime.stage2_windows  # refinement re-scores stage 2's windows only
    # int8 rounding moves a random tiny Whisper's logits by a larger share of their small range than a
    # trained model's; the windows within the margin of a threshold are float32's (torch's) exactly
    assert np.isfinite(got).all() and np.median(np.abs(got - expected)) < 0.005  # ranges are 0.05 and 0.1
    thresholds = np.array([cascade.config.threshold(w) for w in cascade.wake_words])
    near = (got >= thresholds - meta["refine"]["margin_logits"]).any(axis=1)
    assert near.all() and np.abs(got - expected).max() <= 1e-4  # tiny logits: every window is near
    import onnx

    for name, int8 in (("stage1.onnx", False), ("stage2.onnx", True), ("stage2.fp32.onnx", False)):
        ops = {node.op_type for node in onnx.load(str(tmp_path / "int8" / name)).graph.node}
        assert ("MatMulInteger" in ops) == int8, name
    archive = zip_export(tmp_path / "int8", tmp_path / "int8.zip")
    import zipfile

    names = ["int8/runtime.json", "int8/stage1.onnx", "int8/stage2.fp32.onnx", "int8/stage2.onnx"]
    assert sorted(zipfile.ZipFile(archive).namelist()) == names


def test_cascade_gate_never_calibrated_runs_stage2_everywhere_and_bad_sections_are_clear(cascade_dir, tmp_path):
    _, cascade = cascade_dir
    head = {**cascade.config.head, "gate": {"logits": {"jarvis": 0.0}, "unseen_margin": 1.0}}
    uncalibrated = CascadeDetector(cascade.config.replace(head=head), cascade.stage1, cascade.stage2)
    export_detector(save_detector(uncalibrated, tmp_path / "m"), tmp_path / "export")
    meta = json.loads((tmp_path / "export" / "runtime.json").read_text())
    assert meta["cascade"]["gate_logits"] == {"hey computer": None, "jarvis": 0.0}  # -inf: stage 2 always runs
    runtime = load_runtime(tmp_path / "export")
    runtime.logits(np.zeros((3, 24000), np.float32))
    assert runtime.stage2_windows == 3
    meta["format_version"] = 1
    (tmp_path / "export" / "runtime.json").write_text(json.dumps(meta))
    with pytest.raises(RuntimeModelError, match=r"runtime\.json: a cascade section needs format_version 2"):
        read_runtime_config(tmp_path / "export")
    meta |= {"format_version": 2, "cascade": {**meta["cascade"], "stage2": {"file": "../elsewhere.onnx"}}}
    (tmp_path / "export" / "runtime.json").write_text(json.dumps(meta))
    with pytest.raises(RuntimeModelError, match="plain file names"):
        read_runtime_config(tmp_path / "export")


def test_cascade_runtime_streams_without_torch(cascade_dir, tmp_path, speech):
    import subprocess
    import sys
    import textwrap

    from test_runtime import BLOCKER

    model_dir, _ = cascade_dir
    export_detector(model_dir, tmp_path / "export")
    script = BLOCKER + textwrap.dedent(
        f"""
        from wakeword.runtime import main
        code = main(["detect", {str(tmp_path / "export")!r}, {str(speech[0])!r}, "--threads", "1"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("HEAVY", heavy, "CODE", code)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "HEAVY [] CODE 0" and len(lines) >= 3  # the events, then the check line
