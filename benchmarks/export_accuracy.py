"""Does export change accuracy? One trained jarvis detector scored by torch, ONNX float32 and ONNX int8.

    python benchmarks/export_accuracy.py [--real-clips 50] [--test-positives 60] [--negative-minutes 5]
        [--int8-candidates NAME ...] [--reuse-float]

Protocol (the jarvis protocol of recipes/compare.yaml, ../shared/data): session groups split in half; a
head-only transfer model (whisper-tiny.en) is trained on `--real-clips` real clips from training sessions
plus a SMALL synthetic set (100 positives, 60 confusables, 60 generic, no ASR check, 15 epochs: a quick
model, not the best one); `--test-positives` held-out positives (of the protocol's 120) mixed with real
noise at 10 dB SNR; false accepts on `--negative-minutes` of speechocean762 sentences (the protocol has 10;
fewer here to fit three scoring passes on a shared 2-core machine, so "1 FA/h" is a threshold above
every false accept but at most one in those minutes). For each backend: FRR at the threshold giving 1 FA/h on those
sentences, FA/h there, ROC AUC (clip scores), FRR at 1% clip FAR. Scores are LOGITS for all three backends
(no probability saturation). One training run: the differences between backends, not the absolute
figures, are the point.

`--int8-candidates` adds one int8 backend per named configuration of benchmarks/int8_candidates.py
(`onnx-int8[NAME]`); `--reuse-float` takes the torch and float32 rows from the results file of an earlier run
with the same settings instead of scoring them again (they do not depend on the int8 configuration; the
file then says so under `reused_float_rows`).

Results: benchmarks/results/export_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wakeword.checkpoint import load_detector
from wakeword.compare import (
    Contender,
    _real_dataset,
    _train_contender,
    build_test_set,
    evaluate_on,
    held_out_split,
    load_compare,
    on_shared_data,
    subset_dataset,
)
from wakeword.export import Int8Settings, export_detector
from wakeword.runtime import load_runtime

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from int8_candidates import CANDIDATES  # noqa: E402  (a sibling script, not a package module)

SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "runs" / "export-accuracy"
QUICK = ("data.synth.n_positives=100", "data.synth.n_confusables=60", "data.synth.n_generic=60",
         "data.synth.qc=false", "train.epochs=15", f"data.synth.out={OUT / 'synth'}")  # fmt: skip


class LogitScorer(torch.nn.Module):
    """What evaluate_on needs of a detector (config, parameters, score), scoring windows with `logits`."""

    def __init__(self, config, logits) -> None:
        super().__init__()
        self.config, self.logits = config, logits

    def score(self, windows: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.logits(windows.numpy()), dtype=np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-clips", type=int, default=50)
    parser.add_argument("--test-positives", type=int, default=60)
    parser.add_argument("--negative-minutes", type=float, default=5.0)
    parser.add_argument("--int8-candidates", nargs="*", default=[], help="names from benchmarks/int8_candidates.py")
    parser.add_argument("--reuse-float", action="store_true", help="torch and float32 rows from the last run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_compare(REPO / "recipes" / "compare.yaml")
    spec = on_shared_data(
        spec, SHARED, OUT, max_test_positives=args.test_positives, negative_minutes=args.negative_minutes
    )
    real = _real_dataset(spec, OUT)
    pool, test_clips = held_out_split(spec, real)
    test = build_test_set(spec, test_clips, real.root)
    real_dir = subset_dataset(real, [c.id for c in pool[: args.real_clips]], OUT / f"real-{args.real_clips}").root
    contender = Contender(label="transfer-head", recipe=str(REPO / "recipes" / "transfer-head.yaml"), set=QUICK)
    model_dir = OUT / "model"
    start, trained_before = time.monotonic(), (model_dir / "config.json").exists()
    torch_model = _train_contender(contender, spec, real_dir, model_dir)  # reused when already trained
    trained_seconds = None if trained_before else round(time.monotonic() - start, 1)
    export_detector(model_dir, OUT / "onnx-fp32")
    export_detector(model_dir, OUT / "onnx-int8", int8=True)
    config = load_detector(model_dir).config
    candidates = {}
    for name in args.int8_candidates:
        keep, per_channel, reduce_range = CANDIDATES[name]
        folder = OUT / f"onnx-int8-{name.replace(' ', '_').replace(',', '+')}"
        export_detector(model_dir, folder, int8_settings=Int8Settings(keep, per_channel, reduce_range))
        candidates[f"onnx-int8[{name}]"] = load_runtime(folder, threads=1).logits

    @torch.no_grad()
    def torch_logits(windows):
        return torch_model.eval()(torch.from_numpy(windows)).double().numpy()

    scorers = {
        "torch": torch_logits,
        "onnx-fp32": load_runtime(OUT / "onnx-fp32", threads=1).logits,
        "onnx-int8": load_runtime(OUT / "onnx-int8", threads=1).logits,
    } | candidates
    out = REPO / "benchmarks" / "results" / "export_accuracy.json"
    results = {"protocol": __doc__.split("\n\n")[2].strip(), "real_clips": args.real_clips, "backends": {}}
    results |= {"test_positives": args.test_positives, "negative_minutes": args.negative_minutes}
    results["training_seconds"] = trained_seconds
    if args.reuse_float:
        earlier = json.loads(out.read_text())
        same = {k: earlier[k] for k in ("real_clips", "test_positives", "negative_minutes")}
        if same != {k: results[k] for k in same}:
            raise SystemExit(f"{out}: made with {same}, not these settings; run without --reuse-float")
        for name in ("torch", "onnx-fp32"):
            results["backends"][name] = earlier["backends"][name]
            del scorers[name]
        results["reused_float_rows"] = "torch and onnx-fp32 rows copied from the previous run of the same settings"
        results["training_seconds"] = earlier.get("training_seconds")
    for name, logits in scorers.items():
        start = time.monotonic()
        row = evaluate_on(LogitScorer(config, logits), spec, test)
        results["backends"][name] = row | {"scoring_seconds": round(time.monotonic() - start, 1)}
        print(name, results["backends"][name], flush=True)
    base = results["backends"]["torch"]
    results["int8_minus_torch_points"] = {
        key: round(100 * (results["backends"]["onnx-int8"][key] - base[key]), 3)
        for key in ("frr", "roc_auc", "frr_at_1pct_far")
    }
    results["candidates_minus_torch_points"] = {
        name: {key: round(100 * (results["backends"][name][key] - base[key]), 3) for key in ("frr", "roc_auc")}
        for name in candidates
    }
    results["fp32_minus_torch_points"] = {
        key: round(100 * (results["backends"]["onnx-fp32"][key] - base[key]), 3)
        for key in ("frr", "roc_auc", "frr_at_1pct_far")
    }
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
