import subprocess
import sys

import numpy as np
import soundfile as sf

from wakeword.cli import main
from wakeword.data.clips import DataSet


def test_help_lists_every_design_subcommand():
    out = subprocess.run([sys.executable, "-m", "wakeword.cli", "--help"], capture_output=True, text=True, check=True)
    for name in ("synth", "data", "train", "evaluate", "score", "detect", "listen", "compare", "mine", "export"):
        assert name in out.stdout


def test_data_import_list_delete(tmp_path, capsys):
    src = tmp_path / "rec"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"{i}.wav", np.full(8000, 0.1 * (i + 1), np.float32), 16000)
    (src / "bad.wav").write_bytes(b"xx")
    code = main(["data", "import", str(src), "--to", str(tmp_path / "ds"), "--label", "hey computer"])
    out = capsys.readouterr()
    assert code == 1 and "imported 3 clip(s)" in out.out and "bad.wav" in out.err
    assert main(["data", "list", str(tmp_path / "ds")]) == 0
    assert "hey computer: 3 positive, 0 negative" in capsys.readouterr().out
    victim = DataSet(tmp_path / "ds").clips()[0].id
    assert main(["data", "delete", str(tmp_path / "ds"), victim]) == 0
    assert len(DataSet(tmp_path / "ds")) == 2
    assert main(["data", "check", str(tmp_path / "ds")]) == 0


def test_missing_data_set_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "list", str(tmp_path / "nothing")]) == 2
    assert "not a data set" in capsys.readouterr().err


def _phoneme_model(tmp_path):
    from wakeword.checkpoint import save_detector
    from wakeword.models import get_family
    from wakeword.models.base import DetectorConfig

    config = DetectorConfig(family="phoneme", wake_words=("hey computer",))
    return save_detector(get_family("phoneme").build_model(config), tmp_path / "model")


def test_score_detect_evaluate_on_real_tts(tmp_path, tts, capsys):
    """The streaming commands end to end with the untrained phoneme family (no training needed)."""
    import json

    model = _phoneme_model(tmp_path)
    silence = np.zeros(16000, np.float32)
    speech = np.concatenate([silence, tts("good morning everyone"), silence, tts("hey computer"), silence])
    speech = speech.astype(np.float32)
    sf.write(tmp_path / "long.wav", speech, 16000)
    assert main(["score", str(model), str(tmp_path / "long.wav")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "time_seconds,score" and len(rows) - 1 == int(np.ceil(len(speech) / 1600))
    scores = np.array([float(r.split(",")[1]) for r in rows[1:]])
    word_end = (len(speech) - 16000) / 16000
    assert scores.argmax() * 0.1 + 0.1 > word_end - 0.6  # the peak is at the wake word, not the sentence
    word_start = (len(speech) - 16000 - len(tts("hey computer"))) / 16000
    before = scores[: int(word_start * 10)].max()  # the best the sentence and silence reach
    threshold = (before + scores.max()) / 2
    assert scores.max() > before
    assert main(["detect", str(model), str(tmp_path / "long.wav"), "--threshold", str(threshold)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(events) == 1 and abs(events[0]["end_seconds"] - word_end) < 1.0
    for folder, texts in (("pos", ["hey computer"]), ("neg", ["play some music", "good morning everyone"])):
        (tmp_path / folder).mkdir()
        for i, text in enumerate(texts):
            sf.write(tmp_path / folder / f"{i}.wav", tts(text, accent="en-GB-x-rp"), 16000)
    code = main(
        [
            "evaluate",
            str(model),
            "--positives",
            str(tmp_path / "pos"),
            "--negatives",
            str(tmp_path / "neg"),
            "--snr-db",
            "20",
            "--plot",
            str(tmp_path / "det.png"),
            "--target-fa-per-hour",
            "1",
            "--write-threshold",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["n_positive"] == 1 and report["n_negative"] == 2 and report["roc_auc"] == 1.0
    assert (tmp_path / "det.png").stat().st_size > 1000
    saved = json.loads((model / "config.json").read_text())
    assert saved["thresholds"]["hey computer"] == report["threshold"]
    assert (model / "previous" / "config.json").exists()  # the replaced version is kept
