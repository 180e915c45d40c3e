"""The same command on the same commit gives the same result (issue 15, item 9).

Two quickstart runs used to end with different held-out sets: espeak-ng seeded its noise from the clock and
carried state between utterances, so quality control kept different positives, and clip ids were random.
Here a tiny quickstart (synthesis, split, training, calibration) runs twice into two folders; the synthetic
data sets must match byte for byte and the saved weights bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from wakeword.pipeline import train_recipe
from wakeword.recipes import load_recipe

QUICKSTART = Path(__file__).parents[1] / "recipes" / "quickstart.yaml"


def tiny_quickstart(run: Path, whisper_dir: Path) -> list[str]:
    """Quickstart with a tiny local Whisper, 40 positives (two render chunks) and two epochs. QC is off: it
    needs the real tiny.en; its batched decoding is tested against per-clip decoding in test_whisper.py."""
    return [f"data.synth.out={run / 'synth'}", "data.synth.n_positives=40", "data.synth.n_confusables=12",
            "data.synth.n_generic=12", "data.synth.qc=false", f"model.encoder={whisper_dir}", "train.epochs=2",
            "train.n_views=1", "train.batch_size=8"]  # fmt: skip


def test_two_runs_of_the_tiny_quickstart_give_the_same_data_and_weights(tmp_path, tiny_whisper_dir, monkeypatch):
    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))  # no feature cache shared with other tests
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `wakeword train` under OMP_NUM_THREADS=1: the same float arithmetic each run
    try:
        for run in ("a", "b"):
            train_recipe(
                load_recipe(QUICKSTART, tiny_quickstart(tmp_path / run, tiny_whisper_dir)), tmp_path / run / "model"
            )
    finally:
        torch.set_num_threads(threads)
    data = [tmp_path / run / "synth" / "hey-computer" for run in ("a", "b")]
    manifests = [(d / "clips.jsonl").read_text() for d in data]
    assert manifests[0] == manifests[1] and manifests[0].count("\n") == 64
    audio = [{p.name: p.read_bytes() for p in (d / "audio").iterdir()} for d in data]
    assert audio[0] == audio[1]
    weights = [load_file(tmp_path / run / "model" / "model.safetensors") for run in ("a", "b")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    configs = [(tmp_path / run / "model" / "config.json").read_text().replace(str(tmp_path / run), "<run>")
               for run in ("a", "b")]  # fmt: skip
    assert configs[0] == configs[1]  # the same thresholds, calibrated on the same validation split
