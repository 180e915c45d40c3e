"""Command line: each subcommand parses its arguments and makes one library call."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from collections.abc import Sequence

from wakeword.audio import AudioError
from wakeword.checkpoint import ModelError
from wakeword.data.clips import DataSet, ManifestError
from wakeword.recipes import RecipeError
from wakeword.stream import MicrophoneError


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _labels(items: Sequence[str]) -> dict[str, int]:
    """`--label "hey computer"` -> positive; `--label "hey computer=0"` -> negative for that word."""
    labels = {}
    for item in items:
        word, _, value = item.rpartition("=") if "=" in item else (item, "", "1")
        if value not in ("0", "1"):
            raise CommandError(f"--label {item!r}: value after '=' must be 0 or 1")
        labels[word] = int(value)
    return labels


def cmd_data_import(args: argparse.Namespace) -> int:
    dataset = DataSet.create(args.to)
    report = dataset.import_folder(args.dir, _labels(args.label), source=args.source, speaker=args.speaker)
    for _path, reason in report.failed:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"imported {len(report.added)} clip(s) into {dataset.root}; {len(report.failed)} file(s) skipped")
    speakers = Counter(clip.speaker for clip in report.added)
    if speakers:
        print("speakers: " + ", ".join(f"{name} ({n})" for name, n in sorted(speakers.items())))
        if len(speakers) == 1 and args.speaker is None:
            print("(one speaker: put each speaker's files in a sub-folder of their own, or give --speaker)")
    return 1 if report.failed else 0


def cmd_data_list(args: argparse.Namespace) -> int:
    dataset = DataSet(args.data_dir)
    if args.json:
        for clip in dataset.clips():
            print(json.dumps(clip.to_dict()))
    else:
        for word, counts in sorted(dataset.counts().items()):
            print(f"{word}: {counts['positive']} positive, {counts['negative']} negative")
        print(f"{len(dataset)} clip(s) in {dataset.root}")
    return 0


def cmd_data_delete(args: argparse.Namespace) -> int:
    dataset = DataSet(args.data_dir)
    for clip_id in args.clip_id:
        try:
            dataset.delete(clip_id)
        except KeyError as error:
            raise CommandError(str(error.args[0])) from None
        print(f"deleted {clip_id}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    problems = DataSet(args.data_dir).check()
    for problem in problems:
        print(problem)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_train(args: argparse.Namespace) -> int:
    from wakeword.pipeline import train_recipe
    from wakeword.recipes import load_recipe
    from wakeword.timing import format_stages

    report = train_recipe(load_recipe(args.recipe, args.set), args.out)
    for word, result in report.words.items():
        print(f"{word}: held out: {result.summary()}")
    if report.words:  # under `accelerate launch` only the main process calibrates and saves
        print(f"model saved to {report.model_dir} ({report.seconds:.0f} s)")
        print(f"time per stage: {format_stages(report.stages)}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from wakeword.data.synth import build_synthetic_dataset

    report = build_synthetic_dataset(
        args.word,
        args.out,
        n_positives=args.n_positives,
        n_confusables=args.n_confusables,
        n_generic=args.n_generic,
        seed=args.seed,
        qc=not args.no_qc,
    )
    print(report.summary())
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from wakeword.checkpoint import load_detector
    from wakeword.stream import score_file

    detector = load_detector(args.model)
    words = [args.word] if args.word else list(detector.config.wake_words)
    header = ["score"] if len(words) == 1 else [f"score:{w}" for w in words]
    rows = score_file(detector, args.audio, word=args.word, smoothing_hops=args.smoothing)
    first = next(rows, None)  # opens the audio: a file that cannot be read leaves nothing on stdout
    print(",".join(["time_seconds", *header]))
    for when, scores in itertools.chain([first] if first is not None else [], rows):
        print(",".join([f"{when:.2f}", *(f"{s:.6f}" for s in scores)]), flush=False)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from wakeword.checkpoint import load_detector
    from wakeword.stream import detect_file

    detector = load_detector(args.model)
    thresholds = {w: args.threshold for w in detector.config.wake_words} if args.threshold is not None else None
    for event in detect_file(detector, args.audio, thresholds, args.smoothing, args.refractory, args.realtime):
        print(json.dumps(event.to_dict()), flush=True)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from wakeword.stream import list_devices, listen

    if args.list_devices:
        print(list_devices())
        return 0
    if args.model is None:
        raise CommandError("give a MODEL_DIR (or --list-devices)")
    from wakeword.checkpoint import load_detector

    detector = load_detector(args.model)
    thresholds = {w: args.threshold for w in detector.config.wake_words} if args.threshold is not None else None
    print(f"listening for {', '.join(detector.config.wake_words)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    device = int(args.device) if args.device and args.device.isdigit() else args.device  # an index, or a name
    n_events = listen(detector, device, thresholds=thresholds, smoothing_hops=args.smoothing,
                      refractory_seconds=args.refractory, hops_per_call=args.hops_per_call)  # fmt: skip
    print(f"stopped after {n_events} detection(s)", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from wakeword.export import export_detector

    report = export_detector(args.model, args.out, int8=args.int8, refine=not args.no_refine)
    kind, files = "int8" if report.int8 else "float32", " + ".join(report.files)
    if report.float_files:
        files += f", float32 {' + '.join(report.float_files)} to re-score windows near a threshold"
    print(
        f"wrote {report.out_dir} ({kind} {files}, {report.onnx_bytes / 1e6:.1f} MB; max logit difference "
        f"from torch {report.max_abs_logit_difference:.1e}); run it: wakeword-runtime detect {report.out_dir} AUDIO"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from wakeword.checkpoint import load_detector, save_detector
    from wakeword.evaluate import dump, evaluate_folders

    detector = load_detector(args.model)
    report = evaluate_folders(
        detector,
        args.positives,
        args.negatives,
        args.word,
        args.snr_db,
        args.noise,
        args.target_fa_per_hour,
        args.refractory,
        args.plot,
        args.seed,
    )
    print(dump(report))
    if args.write_threshold:
        if args.target_fa_per_hour is None:
            raise CommandError("--write-threshold needs --target-fa-per-hour")
        thresholds = {**detector.config.thresholds, report["word"]: report["threshold"]}
        calibration = {
            "target_fa_per_hour": args.target_fa_per_hour,
            "measured_on": str(args.negatives),
            "snr_db": args.snr_db,
            "refractory_seconds": args.refractory,
        }
        detector.config = detector.config.replace(thresholds=thresholds, calibration=calibration)
        save_detector(detector, args.model, keep_previous=True)
        print(f"threshold {report['threshold']:.4f} written to {args.model}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from wakeword.compare import load_compare, run_compare

    table = run_compare(load_compare(args.recipe, tuple(args.set)))
    print(f"{len(table['rows'])} row(s) in {args.recipe}: table and learning_curve.png in {table['spec']['out']}")
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    from wakeword.mining import MineSettings, mine

    settings = MineSettings(
        threshold=args.threshold,
        threshold_fraction=args.fraction,
        refractory_seconds=args.refractory,
        words=tuple(args.word) or None,
    )
    report = mine(args.model, args.audio, args.out, settings)
    print(report.summary())
    print(f"train with them: --set data.hard_negatives=[{args.out}]  or  wakeword retrain {args.model} {args.out}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from wakeword.mining import retrain

    report = retrain(args.model, args.data, keep_thresholds=not args.recalibrate, weight=args.weight)
    print(f"retrained {args.model} in {report.seconds:.1f} s with {report.counts['hard_negatives']} extra clip(s)")
    print(f"the replaced version is in {args.model}/previous (wakeword rollback {args.model})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from wakeword.mining import rollback

    print(f"restored the previous version of {rollback(args.model)}")
    return 0


def _add_mining_commands(sub: argparse._SubParsersAction) -> None:
    mine = sub.add_parser("mine", help="false triggers from long negative audio, as negative clips")
    mine.add_argument("model", help="model directory")
    mine.add_argument("audio", nargs="+", help="audio files or folders that hold no wake word (hours are fine)")
    mine.add_argument("--out", required=True, help="data set to add the mined clips to (created)")
    mine.add_argument("--threshold", type=float, default=None, help="collect activations scoring at least this")
    mine.add_argument("--fraction", type=float, default=0.5, help="default threshold: this share of the model's")
    mine.add_argument("--refractory", type=float, default=1.0, help="seconds after an activation with no new one")
    mine.add_argument("--word", action="append", default=[], help="mine only this wake word (repeatable)")
    mine.set_defaults(func=cmd_mine)
    retrain = sub.add_parser("retrain", help="train a model's own recipe again with mined or corrected clips")
    retrain.add_argument("model", help="model directory (updated in place; the old version is kept)")
    retrain.add_argument("data", nargs="+", help="data sets of mined / corrected clips")
    retrain.add_argument("--weight", type=float, default=None, help="loss weight of those clips (recipe default 2)")
    retrain.add_argument("--recalibrate", action="store_true", help="calibrate and test again (slower)")
    retrain.set_defaults(func=cmd_retrain)
    rollback = sub.add_parser("rollback", help="restore the model version the last retrain replaced")
    rollback.add_argument("model")
    rollback.set_defaults(func=cmd_rollback)


def _add_stream_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=float, default=None, help="override the model's calibrated threshold")
    parser.add_argument("--smoothing", type=int, default=1, help="average scores over the last N hops")
    parser.add_argument("--refractory", type=float, default=1.0, help="seconds after a detection with no new one")


def _add_stream_commands(sub: argparse._SubParsersAction) -> None:
    score = sub.add_parser("score", help="CSV of scores per hop for an audio file (time_seconds = window end)")
    score.add_argument("model")
    score.add_argument("audio")
    score.add_argument("--word", default=None, help="only this wake word's column")
    score.add_argument("--smoothing", type=int, default=1, help="average scores over the last N hops")
    score.set_defaults(func=cmd_score)
    detect = sub.add_parser("detect", help="detection events for an audio file, one JSON object per line")
    detect.add_argument("model")
    detect.add_argument("audio")
    detect.add_argument("--realtime", action="store_true", help="pace the file in real time, like a microphone")
    _add_stream_options(detect)
    detect.set_defaults(func=cmd_detect)
    listen = sub.add_parser("listen", help="detect live from the microphone (Ctrl-C to stop)")
    listen.add_argument("model", nargs="?")
    listen.add_argument("--device", default=None, help="input device index or name (see --list-devices)")
    listen.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    listen.add_argument("--hops-per-call", type=int, default=None,
                        help="score N hops at a time: less CPU, up to N-1 hops later detections "
                             "(default: 3 for a cascade, else 1)")  # fmt: skip
    _add_stream_options(listen)
    listen.set_defaults(func=cmd_listen)
    ev = sub.add_parser("evaluate", help="FRR, FA/h, ROC AUC and DET curve on folders of recordings")
    ev.add_argument("model")
    ev.add_argument("--positives", required=True, help="folder of recordings of the wake word")
    ev.add_argument("--negatives", required=True, help="folder of recordings without it")
    ev.add_argument("--word", default=None, help="which wake word (default: the model's first)")
    ev.add_argument("--snr-db", type=float, default=None, help="mix background noise at this SNR")
    ev.add_argument("--noise", default=None, help="folder of noise recordings (default: pink noise)")
    ev.add_argument("--target-fa-per-hour", type=float, default=None, help="report at the threshold meeting this")
    ev.add_argument("--write-threshold", action="store_true", help="store that threshold in the model config")
    ev.add_argument("--refractory", type=float, default=1.0)
    ev.add_argument("--plot", default=None, help="write the DET curve to this PNG")
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=cmd_evaluate)


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="manage a data set folder (clips.jsonl + audio/)")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    imp = data_sub.add_parser("import", help="add a folder of real recordings with a label")
    imp.add_argument("dir", help="folder of audio files (searched recursively)")
    imp.add_argument("--to", required=True, help="data set folder (created if missing)")
    imp.add_argument(
        "--label", action="append", required=True, help='wake word, e.g. "hey computer" or "hey computer=0"'
    )
    imp.add_argument("--source", default="recorded", choices=["recorded", "corpus"])
    imp.add_argument(
        "--speaker", default=None, help="speaker of all files (default: each file's folder name; DIR/<speaker>/...)"
    )
    imp.set_defaults(func=cmd_data_import)
    lst = data_sub.add_parser("list", help="count clips per wake word")
    lst.add_argument("data_dir")
    lst.add_argument("--json", action="store_true", help="print every clip record")
    lst.set_defaults(func=cmd_data_list)
    rm = data_sub.add_parser("delete", help="delete clips (manifest entry and audio)")
    rm.add_argument("data_dir")
    rm.add_argument("clip_id", nargs="+")
    rm.set_defaults(func=cmd_data_delete)
    chk = data_sub.add_parser("check", help="report missing and orphan audio files")
    chk.add_argument("data_dir")
    chk.set_defaults(func=cmd_data_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wakeword", description="Make and run your own wake-word detector.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    synth = sub.add_parser("synth", help="TTS positives, confusable and generic negatives, as a data set")
    synth.add_argument("word", help='the wake word, e.g. "hey computer"')
    synth.add_argument("--out", required=True, help="data set folder (created; clips are added)")
    synth.add_argument("--n-positives", type=int, default=300)
    synth.add_argument("--n-confusables", type=int, default=150, help='near misses such as "hey commuter"')
    synth.add_argument("--n-generic", type=int, default=150, help="random negative words and sentences")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--no-qc", action="store_true", help="keep positives the ASR check would drop")
    synth.set_defaults(func=cmd_synth)
    _add_data_commands(sub)
    _add_stream_commands(sub)
    _add_mining_commands(sub)
    compare = sub.add_parser("compare", help="train and evaluate the families over growing numbers of real clips")
    compare.add_argument("recipe", help="comparison recipe, e.g. recipes/compare.yaml")
    compare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value")
    compare.set_defaults(func=cmd_compare)
    export = sub.add_parser("export", help="ONNX graph + runtime.json for the torch-free wakeword-runtime")
    export.add_argument("model", help="model directory (config.json + model.safetensors)")
    export.add_argument(
        "--out",
        required=True,
        help="folder to write model.onnx (a cascade: stage1.onnx, stage2.onnx) and runtime.json into",
    )
    export.add_argument("--int8", action="store_true", help="dynamic int8 quantisation (faster)")
    export.add_argument(
        "--no-refine",
        action="store_true",
        help="with --int8: leave out the float32 graph that re-scores windows near a threshold (a smaller "
        "folder, but int8 then decides alone and may move a detection)",
    )
    export.set_defaults(func=cmd_export)
    train = sub.add_parser("train", help="train a detector from a YAML recipe")
    train.add_argument("recipe", help="recipe file, e.g. recipes/quickstart.yaml")
    train.add_argument("--out", required=True, help="model directory to write (config.json + model.safetensors)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from wakeword.encoders.speech_embedding import SpeechEmbeddingError
    from wakeword.encoders.whisper import EncoderLoadError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        CommandError,
        AudioError,
        ManifestError,
        RecipeError,
        ModelError,
        MicrophoneError,
        FileNotFoundError,
        # the library raises ValueError for input it refuses (a wake word with no letters, an unknown --word,
        # a training state from other settings) and OSError names the path it could not read or write; a
        # user needs that one line, not a traceback
        ValueError,
        OSError,
        EncoderLoadError,  # a Whisper name that cannot be loaded offline: the message names the alternative
        SpeechEmbeddingError,
    ) as error:
        print(f"wakeword {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print("interrupted", file=sys.stderr)
        return 128 + getattr(error, "signum", 2)  # 130 for Ctrl-C, 143 for SIGTERM during training


if __name__ == "__main__":
    sys.exit(main())
