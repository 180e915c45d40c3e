import shutil
import subprocess
import sys

import pytest

from wakeword.checkpoint import load_detector


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_saves_one_model(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo DDP): both train, one model directory is written."""
    accelerate = shutil.which("accelerate", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert accelerate, "accelerate's launcher is installed with the package"
    command = [
        accelerate,
        "launch",
        "--multi_gpu",  # the DDP launcher; without CUDA each process trains on the CPU with gloo
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "wakeword.cli",
        "train",
        "recipes/e2e.yaml",
        "--out",
        str(tmp_path / "m"),
        "--set",
        f"data.synth.out={tmp_path / 'synth'}",
        "--set",
        "data.synth.n_positives=6",
        "--set",
        "evaluate.calibration_minutes=0",
        "--set",
        "data.synth.n_confusables=3",
        "--set",
        "data.synth.n_generic=3",
        "--set",
        "data.synth.qc=false",
        "--set",
        "train.epochs=2",
        "--set",
        "train.batch_size=4",
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=__import__("pathlib").Path(__file__).parents[1]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "training on 2 process(es)" in out.stdout
    assert out.stdout.count("model saved to") == 1
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "det.png",
        "model.safetensors",
        "report.json",
    ]
    assert load_detector(tmp_path / "m").config.family == "e2e"
    assert len((tmp_path / "synth" / "jarvis" / "clips.jsonl").read_text().splitlines()) == 12  # made once
