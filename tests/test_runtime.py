"""The torch-free runtime: imports without torch, and reports the same events as StreamingDetector."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from test_export import make_model

from wakeword.checkpoint import load_detector, read_config, save_detector
from wakeword.export import export_detector
from wakeword.metrics import probability
from wakeword.runtime import RuntimeModelError, load_runtime, main, read_runtime_config, to_logit
from wakeword.stream import detect_file, score_array

# A meta-path finder that makes these imports fail, as in a venv without them.
BLOCKER = textwrap.dedent(
    """
    import sys
    BLOCKED = {"torch", "torchaudio", "transformers", "scipy", "librosa", "gradio", "onnx", "accelerate"}
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the runtime must not import it")
    sys.meta_path.insert(0, Blocker())
    """
)


def _gap_threshold(scores: np.ndarray) -> float:
    """A threshold between two distinct scores in the upper half of the track, far from both."""
    ordered = np.sort(scores)
    low, high = len(ordered) // 2, len(ordered) - 3
    gaps = np.diff(ordered[low:high])
    index = low + int(np.argmax(gaps))
    assert gaps.max() > 1e-3
    return float((ordered[index] + ordered[index + 1]) / 2)


def _spread_logits(model, audio: np.ndarray) -> None:
    """Rescale the output layer so each word's logits over `audio`'s hops have median 0 and range 6: a
    random network's logits vary too little, and scaled up bluntly its probabilities saturate at 1."""
    _, scores = score_array(model, audio)
    logits = np.log(scores) - np.log1p(-scores) if scores.min() >= 0 and scores.max() <= 1 else scores
    output = model.output
    with torch.no_grad():
        scale = torch.from_numpy(6.0 / np.ptp(logits, axis=0)).float()
        output.weight.mul_(scale[:, None])
        output.bias.mul_(scale).sub_(torch.from_numpy(np.median(logits, axis=0)).float() * scale)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, speech):
    """An e2e model whose thresholds are set so that the speech file gives several events, and its export."""
    root = tmp_path_factory.mktemp("runtime")
    model_dir, model = make_model(root, "e2e", seed=3, output_scale=1.0)
    _spread_logits(model, speech[1])
    _, scores = score_array(model, speech[1])
    thresholds = {word: _gap_threshold(scores[:, i]) for i, word in enumerate(model.config.wake_words)}
    model.config = read_config(model_dir).replace(thresholds=thresholds)
    save_detector(model, model_dir)
    export_detector(model_dir, root / "export")
    return model_dir, root / "export"


def test_runtime_imports_and_streams_without_torch(exported, speech):
    _, folder = exported
    script = BLOCKER + textwrap.dedent(
        f"""
        from wakeword.runtime import main
        code = main(["detect", {str(folder)!r}, {str(speech[0])!r}])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("HEAVY", heavy, "CODE", code)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "HEAVY [] CODE 0"
    events = [json.loads(line) for line in lines[:-1]]
    assert len(events) >= 2 and {"word", "score", "probability", "time_seconds"} <= set(events[0])


def test_blocker_really_blocks():
    script = BLOCKER + "import torch"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_event_times_equal_the_torch_streaming_detector(exported, speech):
    model_dir, folder = exported
    torch_events = list(detect_file(load_detector(model_dir), speech[0]))
    runtime = load_runtime(folder, threads=1)
    from wakeword.runtime import detect_file as runtime_detect_file

    onnx_events = list(runtime_detect_file(runtime, speech[0]))
    assert len(torch_events) >= 2 and {e.word for e in torch_events} == set(runtime.wake_words)
    key = lambda e: (e.word, e.time_seconds, e.start_seconds, e.end_seconds)  # noqa: E731
    assert [key(e) for e in onnx_events] == [key(e) for e in torch_events]
    scale = json.loads((folder / "runtime.json").read_text())["threshold_scale"]
    for onnx_event, torch_event in zip(onnx_events, torch_events, strict=True):
        onnx_score = probability(onnx_event.score) if scale == "probability" else onnx_event.score
        assert onnx_score == pytest.approx(torch_event.score, abs=1e-4)


def test_cli_detect_prints_logit_and_probability(exported, speech, capsys):
    _, folder = exported
    assert main(["detect", str(folder), str(speech[0]), "--threads", "1"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert events and all(e["probability"] == pytest.approx(probability(e["score"]), abs=0) for e in events)
    assert main(["detect", str(folder), str(speech[0]), "--threshold", "1e9"]) == 0  # a logit nothing reaches
    assert capsys.readouterr().out == ""


def test_probability_and_threshold_scales():
    assert probability(0.0) == 0.5 and probability(20.0) < 1.0 and 0 < probability(-100.0) < 1e-40
    assert to_logit(0.5, "probability") == 0.0 and to_logit(0.9, "probability") == pytest.approx(math.log(9))
    assert 20 < to_logit(1.0, "probability") < math.inf and to_logit(-2.5, "logit") == -2.5


def test_bad_exports_are_clear_errors(tmp_path, exported, capsys):
    with pytest.raises(RuntimeModelError, match="not an exported model"):
        read_runtime_config(tmp_path)
    _, folder = exported
    meta = json.loads((folder / "runtime.json").read_text())
    refine = {"graphs": {"model.onnx": "model.fp32.onnx"}, "margin_logits": 4.0}
    changes = (
        ({"format_version": 99}, "upgrade"),
        ({"threshold_scale": "dB"}, "threshold_scale"),
        ({"refine": refine}, "a refine section needs format_version 3"),
        ({"format_version": 3, "refine": refine | {"margin_logits": 0}}, "margin_logits must be > 0"),
        ({"format_version": 3, "refine": refine | {"graphs": {"model.onnx": "../x.onnx"}}}, "plain file names"),
    )
    for change, message in changes:
        bad = tmp_path / message
        bad.mkdir()
        (bad / "runtime.json").write_text(json.dumps(meta | change))
        with pytest.raises(RuntimeModelError, match=f"runtime.json: .*{message}"):
            read_runtime_config(bad)
    (tmp_path / "upgrade" / "runtime.json").write_text(json.dumps(meta))
    (tmp_path / "plain file names" / "runtime.json").write_text(
        json.dumps(meta | {"format_version": 3, "refine": refine})
    )
    (tmp_path / "plain file names" / "model.onnx").write_bytes((folder / "model.onnx").read_bytes())
    with pytest.raises(RuntimeModelError, match=r"model\.fp32\.onnx: cannot load"):  # a refine graph that is not there
        load_runtime(tmp_path / "plain file names")
    assert main(["detect", str(tmp_path / "upgrade"), "x.wav"]) == 2  # no model.onnx there
    assert "model.onnx" in capsys.readouterr().err
    assert main(["detect", str(folder), str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
