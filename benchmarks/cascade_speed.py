"""Cost of the two-stage detector on ONE thread, over real speech and over noise/silence (issue 14).

    python benchmarks/cascade_speed.py train             # a jarvis cascade from ../shared/data (reduced)
    python benchmarks/cascade_speed.py train --full      # the same data, the recipe's own settings
    python benchmarks/cascade_speed.py measure --minutes 60

`train` builds a small real-data set in benchmarks/cache/cascade/ (jarvis recordings as positives, the other
keywords' recordings as negatives, half of the speechocean762 speakers as unlabelled distillation audio and a
few minutes of them as negative audio for calibration) and trains recipes/cascade.yaml on it with reduced
settings (see TRAIN_OVERRIDES). `measure` streams, in a fresh process per condition (so that peak RSS is the
condition's own):
- speech: the OTHER half of the speechocean762 speakers, looped, with 0.3-2 s gaps, noise from
  ../shared/data/noise mixed at 10 dB SNR;
- quiet: the shared noise files, one after another at their own level, alternating with digital silence
  and with the same noise 40 dB down.
Reported per condition and detector (cascade, stage 1 alone, stage 2 alone): real-time factor = process CPU
seconds spent in StreamingDetector.process / audio seconds (the audio source is not counted), the share of
hops that reached stage 2, and peak RSS. Results: benchmarks/results/cascade_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = REPO / "benchmarks" / "cache" / "cascade"
RESULTS = REPO / "benchmarks" / "results"
MODEL = CACHE / "model"
SAMPLE_RATE = 16000
BLOCK_SECONDS = 3.2
TRAIN_OVERRIDES = [  # reduced for a shared 2-core machine: one view, few epochs, capped clips
    "wake_words=[jarvis]", "data.synth=null", "train.n_views=1", "train.epochs=15", "train.patience=5",
    "evaluate.calibration_minutes=0", "data.mining_rounds=0", "model.cascade.max_distill_windows=1500",
    "model.cascade.max_stream_clips=60",
]  # fmt: skip
FULL_OVERRIDES = ["wake_words=[jarvis]", "data.synth=null"]  # --full: otherwise the recipe's own settings
MODEL_FULL = CACHE / "model-full"
STAGE2 = CACHE / "stage2"  # a stage 2 trained by an earlier `train` run (copied from the cascade's staging folder)


def _speechocean(half: int) -> list[Path]:
    """Sentence files of every other speaker (half 0 or 1), without sentences close to a keyword."""
    rows = list(csv.DictReader((SHARED / "speech" / "speechocean762" / "manifest.csv").open()))
    speakers = sorted({r["speaker"] for r in rows})[half::2]
    keep = set(speakers)
    return [SHARED / r["path"] for r in rows if r["speaker"] in keep and r["mentions_keyword_part"] == "0"]


def _keyword_clips(word: str, limit: int) -> list[tuple[Path, str]]:
    rows = [r for r in csv.DictReader((SHARED / "keywords" / "manifest.csv").open()) if r["keyword"] == word]
    return [(SHARED / "keywords" / r["path"].split("keywords/", 1)[-1], r["session_group"]) for r in rows[:limit]]


def build_data() -> tuple[Path, Path, Path]:
    """(data set, distillation speech folder, negative-audio folder) under CACHE, made once."""
    from wakeword.audio import load_audio
    from wakeword.data.clips import DataSet

    root, speech, negative = CACHE / "data", CACHE / "distill-speech", CACHE / "negative-audio"
    if not (root / "clips.jsonl").exists():
        data = DataSet.create(root)
        for word, label, limit in (("jarvis", 1, 200), ("smart mirror", 0, 150), ("snowboy", 0, 150)):
            for path, group in _keyword_clips(word, limit):
                data.add_audio(load_audio(path), {"jarvis": label}, source="corpus", speaker=group)
    files = _speechocean(0)
    for folder, chosen in ((speech, files[1::2]), (negative, files[0::2][:150])):
        if not folder.exists():
            folder.mkdir(parents=True)
            for path in chosen:
                os.symlink(path, folder / path.name)
    return root, speech, negative


def train(full: bool = False, stage2: Path | None = None, out: Path | None = None, extra: Sequence[str] = (),
          tag: str = "") -> None:  # fmt: skip
    """The reduced benchmark cascade into MODEL, or with --full the recipe's own settings (3 views, 40 epochs,
    mining, 30 minutes of long-form calibration, 4000 distillation windows) into MODEL_FULL. `stage2`: a
    trained stage 2 reused as it is (only stage 1 and the gate train); `extra`: more recipe overrides."""
    from wakeword.pipeline import train_recipe
    from wakeword.recipes import load_recipe

    data, speech, negative = build_data()
    changed = [*(FULL_OVERRIDES if full else TRAIN_OVERRIDES), *extra]
    overrides = [*changed, f"data.train=[{data}]", f"model.cascade.distill_audio=[{speech}]",
                 f"data.negative_audio=[{negative}]", f"data.noise_dirs=[{SHARED / 'noise'}]"]  # fmt: skip
    stage2 = stage2 or (STAGE2 if not full and (STAGE2 / "config.json").exists() else None)
    if stage2 is not None:  # reuse it: stage 2 takes most of the time
        overrides.append(f"model.cascade.stage2_model={stage2}")
    started = time.monotonic()
    report = train_recipe(load_recipe(REPO / "recipes" / "cascade.yaml", overrides),
                          out or (MODEL_FULL if full else MODEL))  # fmt: skip
    summary = {"train_seconds": round(time.monotonic() - started), "overrides": changed,
               "stage2_model": str(stage2) if stage2 else None,
               "gate": report.calibration.get("cascade_gate"), "cascade_test": report.to_dict()["words"],
               "stage2_test": report.counts.get("stage2_test")}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    name = f"cascade_train{'_full' if full else ''}{tag}.json"
    (RESULTS / name).write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


# -- the streams ------------------------------------------------------------------------------------------------


def _noises() -> list[np.ndarray]:
    from wakeword.audio import load_audio

    return [load_audio(p) for p in sorted((SHARED / "noise").glob("*.flac"))]


def speech_stream(seconds: float, seed: int = 0) -> Iterator[np.ndarray]:
    """Held-out speechocean762 sentences looped with 0.3-2 s gaps, shared noise at 10 dB SNR; 16 kHz blocks."""
    from wakeword.audio import load_audio
    from wakeword.data.augment import mix_at_snr

    rng, files, noises, made = np.random.default_rng(seed), _speechocean(1), _noises(), 0
    while made < seconds * SAMPLE_RATE:
        path = files[int(rng.integers(len(files)))]
        gap = np.zeros(int(rng.uniform(0.3, 2.0) * SAMPLE_RATE), np.float32)
        piece = np.concatenate([load_audio(path), gap])
        noise = noises[int(rng.integers(len(noises)))]
        piece = mix_at_snr(piece, noise[int(rng.integers(max(1, len(noise) - len(piece)))) :], 10.0)
        made += len(piece)
        yield piece.astype(np.float32)


def quiet_stream(seconds: float, seed: int = 0) -> Iterator[np.ndarray]:
    """The shared noise files in turn (30 s each, own level), then 30 s of silence or the noise 40 dB down."""
    rng, noises, made, index = np.random.default_rng(seed), _noises(), 0, 0
    while made < seconds * SAMPLE_RATE:
        noise = noises[index % len(noises)]
        start = int(rng.integers(max(1, len(noise) - 30 * SAMPLE_RATE)))
        piece = np.resize(noise[start:], 30 * SAMPLE_RATE)
        piece = piece if index % 3 == 0 else (piece * 0.01 if index % 3 == 1 else np.zeros_like(piece))
        made, index = made + len(piece), index + 1
        yield piece.astype(np.float32)


def measure_one(
    condition: str, which: str, minutes: float, model: Path = MODEL, block_seconds: float = BLOCK_SECONDS
) -> dict:
    """One condition in this process: CPU seconds in process() per audio second, stage-2 share, peak RSS.
    A `model` folder with a runtime.json is an export (`wakeword export`), streamed by the torch-free runtime."""
    if (model / "runtime.json").is_file():
        from wakeword.runtime import load_runtime, streaming_detector

        if which != "cascade":
            raise SystemExit("an exported cascade is measured whole (which = cascade)")
        cascade = load_runtime(model, threads=1)
        streamer = streaming_detector(cascade)
    else:
        import torch

        from wakeword.checkpoint import load_detector
        from wakeword.stream import StreamingDetector

        torch.set_num_threads(1)
        cascade = load_detector(model)
        detector = {"cascade": cascade, "stage1": cascade.stage1, "stage2": cascade.stage2}[which]
        streamer = StreamingDetector(detector)
        # not timed: the first calls load stage 2's onnxruntime encoder and trace stage 1's graph (once, ~1 s)
        cascade.stage2.score(torch.zeros(1, cascade.config.window_samples))
    cpu, n_samples, n_hops, n_events = 0.0, 0, 0, 0
    for _ in range(20):
        streamer.process(np.zeros(int(block_seconds * SAMPLE_RATE), dtype=np.float32))
    streamer.reset()
    cascade.stage2_windows = 0
    stream = speech_stream if condition == "speech" else quiet_stream
    for piece in stream(minutes * 60):
        step = int(block_seconds * SAMPLE_RATE)
        for start in range(0, len(piece), step):
            block = piece[start : start + step]
            before = time.process_time()
            result = streamer.process(block)
            cpu += time.process_time() - before
            n_samples, n_hops, n_events = (
                n_samples + len(block),
                n_hops + len(result.scores),
                n_events + len(result.detections),
            )
    seconds = n_samples / SAMPLE_RATE
    share = cascade.stage2_windows / n_hops if which == "cascade" else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"condition": condition, "detector": which, "audio_seconds": round(seconds, 1), "hops": n_hops,
            "cpu_seconds": round(cpu, 2), "real_time_factor": cpu / seconds, "stage2_share": share,
            "detections": n_events, "peak_rss_mb": rss, "block_seconds": block_seconds,
            "torch_imported": "torch" in sys.modules}  # fmt: skip


def measure(minutes: float, speech_minutes: float, alone_minutes: float, model: Path, block_seconds: float,
            tag: str) -> None:  # fmt: skip
    rows = []
    for condition in ("speech", "quiet"):
        cascade_minutes = speech_minutes if condition == "speech" else minutes
        for which, length in (("cascade", cascade_minutes), ("stage1", alone_minutes), ("stage2", alone_minutes)):
            command = [sys.executable, __file__, "one", condition, which, "--minutes", str(length), "--model",
                       str(model), "--block-seconds", str(block_seconds)]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    config = json.loads((model / "config.json").read_text())
    result = {"threads": 1, "machine": "2 shared cores (other jobs running); CPU time, not wall time, is measured",
              "shared_data": str(SHARED), "gate": config["head"]["gate"], "rows": rows}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"cascade_speed{tag}.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["train", "measure", "one"])
    parser.add_argument("condition", nargs="?", choices=["speech", "quiet"])
    parser.add_argument("which", nargs="?", choices=["cascade", "stage1", "stage2"])
    parser.add_argument("--minutes", type=float, default=60.0, help="stream length of the cascade (noise/silence)")
    parser.add_argument("--speech-minutes", type=float, default=60.0, help="stream length of the cascade (speech)")
    parser.add_argument("--alone-minutes", type=float, default=5.0, help="stream length for each stage alone")
    parser.add_argument("--model", type=Path, default=MODEL,
                        help="cascade model folder (default: `train`'s), or its `wakeword export`")  # fmt: skip
    parser.add_argument("--block-seconds", type=float, default=BLOCK_SECONDS, help="audio per process() call")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--full", action="store_true", help="train: the recipe's settings, not the reduced ones")
    parser.add_argument("--stage2", type=Path, help="train: reuse this trained stage 2 (only stage 1 and the gate)")
    parser.add_argument("--out", type=Path, help="train: the model folder (default: by --full)")
    parser.add_argument("--set", nargs="*", default=[], help="train: more recipe overrides, key=value")
    args = parser.parse_args()
    if args.action == "train":
        train(args.full, args.stage2, args.out, args.set, args.tag)
    elif args.action == "measure":
        measure(args.minutes, args.speech_minutes, args.alone_minutes, args.model, args.block_seconds, args.tag)
    else:
        print(json.dumps(measure_one(args.condition, args.which, args.minutes, args.model, args.block_seconds)))


if __name__ == "__main__":
    main()
