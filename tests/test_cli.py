import subprocess
import sys

import numpy as np
import soundfile as sf

from wakeword.cli import main
from wakeword.data.clips import DataSet


def test_help_lists_every_design_subcommand():
    out = subprocess.run([sys.executable, "-m", "wakeword.cli", "--help"], capture_output=True, text=True, check=True)
    for name in ("synth", "data", "train", "evaluate", "score", "detect", "listen", "compare", "mine"):
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
