"""Training a two-stage detector (family `cascade`, see wakeword.models.cascade) from one recipe.

1. Stage 2 trains exactly as a detector of its own family would (the same pipeline, calibration and test).
2. Stage 1 learns from stage 2 by distillation through the one trainer (`wakeword.train.fit`, with the
   cascade family's `compute_loss`): stage 2's logits are soft targets, the labels a hard one, on
   - the augmented training windows (labelled),
   - every streaming hop of each training clip where stage 2 comes near its threshold, plus a few other
     hops per clip (unlabelled: the gate must open on the hops stage 2 fires on, wherever the word sits),
   - windows of unlabelled audio (`model.cascade.distill_audio`: speech, noise) and of the recipe's negative
     audio and noise folders (those two are known negatives).
3. The gate is calibrated on validation audio: per word, the stage-1 logit that passes at least
   `gate_recall` of the hops where stage 2 reaches its threshold, lowered by `gate_slack`; the share of
   hops that reach stage 2 (the call rate) is measured there and stored in the config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wakeword.audio import SAMPLE_RATE, load_audio
from wakeword.calibration import calibration_longform, near_miss_record, negative_audio_pairs, split_near_misses
from wakeword.checkpoint import load_detector, save_detector
from wakeword.data.augment import AugmentSettings
from wakeword.data.clips import Clip
from wakeword.data.dataset import WakeWordDataset
from wakeword.data.long_audio import long_audio_files, stream_windows
from wakeword.evaluate import padded_clip, word_report, write_det_plot
from wakeword.fitting import class_balance
from wakeword.models import get_family
from wakeword.models.base import Detector, DetectorConfig
from wakeword.models.cascade import CascadeDetector, GateSettings
from wakeword.recipes import CascadeSpec, Recipe
from wakeword.scoring import score_signals
from wakeword.timing import timed
from wakeword.train import STATE_DIR, fit, seed_everything

ClipPair = tuple[Clip, Path]
NEAR_THRESHOLD = 3.0  # stream hops within this many logits below stage 2's threshold are always distilled
TEACHER_BATCH = 64  # windows per stage-2 call while labelling
QUIET_DB_RANGE = (20.0, 60.0)  # how much quieter the quiet copies of known-negative windows are (dB)
NOISE_DB_RANGE = (-60.0, -10.0)  # RMS levels of the made noise windows, dB relative to full scale


class DistillSet(torch.utils.data.Dataset):
    """Windows with stage 2's logits: audio (N, window_samples) kept as float16, teacher/labels/mask (N, n_words)."""

    def __init__(self, audio: np.ndarray, teacher: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> None:
        self.audio = torch.from_numpy(np.asarray(audio, np.float16))
        self.teacher, self.labels, self.mask = (
            torch.from_numpy(np.asarray(a, np.float32)) for a in (teacher, labels, mask)
        )

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"audio": self.audio[index].float(), "teacher": self.teacher[index],
                "labels": self.labels[index], "mask": self.mask[index]}  # fmt: skip

    def counts(self) -> dict[int, dict[str, int]]:
        """Positive and negative labelled windows per word column (class balance of the hard loss)."""
        labelled = self.mask > 0
        return {k: {"positive": int((labelled[:, k] & (self.labels[:, k] > 0)).sum()),
                    "negative": int((labelled[:, k] & (self.labels[:, k] == 0)).sum())}
                for k in range(self.labels.shape[1])}  # fmt: skip


def _teacher(stage2: Detector, windows: np.ndarray) -> np.ndarray:
    """Stage-2 logits (n, n_words) of windows (n, window_samples)."""
    out = [stage2.score(torch.from_numpy(np.ascontiguousarray(windows[i : i + TEACHER_BATCH], np.float32)))
           for i in range(0, len(windows), TEACHER_BATCH)]  # fmt: skip
    return torch.cat(out).double().numpy() if out else np.zeros((0, len(stage2.wake_words)))


def _labelled_windows(dataset: WakeWordDataset, n_views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio, labels, mask) of `n_views` passes over a window dataset (each pass drawn anew)."""
    audio, labels, mask = [], [], []
    for view in range(n_views):
        dataset.set_epoch(view)
        for index in range(len(dataset)):
            item = dataset[index]
            audio.append(item["audio"].numpy())
            labels.append(item["labels"].numpy())
            mask.append(item["mask"].numpy())
    return np.stack(audio), np.stack(labels), np.stack(mask)


def _stream_hops(
    stage2: Detector, pairs: Sequence[ClipPair], per_clip: int, limit: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Streaming windows of positive clips (padded as evaluated) and their stage-2 logits: every hop near or
    above stage 2's threshold, plus `per_clip` other hops per clip, from at most `limit` clips;
    shapes (n, window_samples) and (n, n_words)."""
    config, rng, kept, scores = stage2.config, np.random.default_rng(seed), [], []
    ceiling = np.array([config.threshold(w) for w in config.wake_words]) - NEAR_THRESHOLD
    positives = [p for p in pairs if any(p[0].labels.values())]
    for clip, root in positives[:limit] if limit is not None else positives:
        windows = stream_windows(padded_clip(config, load_audio(root / clip.path)), config.window_samples,
                                 config.hop_samples)  # fmt: skip
        teacher = _teacher(stage2, windows)
        near = (teacher >= ceiling).any(axis=1)
        others = np.flatnonzero(~near)
        chosen = np.concatenate([np.flatnonzero(near), rng.choice(others, min(per_clip, len(others)), replace=False)])
        kept.append(np.array(windows[np.sort(chosen)]))
        scores.append(teacher[np.sort(chosen)])
    if not kept:
        return np.zeros((0, config.window_samples), np.float32), np.zeros((0, len(config.wake_words)))
    return np.concatenate(kept), np.concatenate(scores)


def _audio_windows(files: Sequence[Path], config: DetectorConfig, limit: int, seed: int) -> np.ndarray:
    """At most `limit` windows (n, window_samples) spread over long files: each file's stream start (the
    windows that straddle the zero padding and the audio, seen whenever a stream starts), then random hops."""
    if not files or limit <= 0:
        return np.zeros((0, config.window_samples), np.float32)
    rng, per_file, out = np.random.default_rng(seed), max(1, limit // len(files)), []
    start = round(config.window_seconds / config.hop_seconds)
    for path in files:
        windows = stream_windows(load_audio(path), config.window_samples, config.hop_samples)
        rest = rng.choice(np.arange(start, len(windows)), max(0, min(per_file, len(windows)) - start), replace=False)
        rows = np.concatenate([np.arange(min(start, per_file, len(windows))), np.sort(rest)])
        out.append(np.array(windows[rows]))
    return np.concatenate(out)[:limit]


def quieter_windows(windows: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Copies of a random `share` of windows (n, window_samples), each QUIET_DB_RANGE quieter, plus as many
    windows of digital silence as 1% of them (at least one when share > 0): shape (m, window_samples).

    The log-mel front end keeps absolute level, and a microphone gives every level from a loud room to a
    muted input, quieter than most training audio. (Measured: no effect on the benchmark's quiet stream,
    whose -40 dB noise and silence kept the gate shut without these copies too; cascade_call_rate_steps.)"""
    if share <= 0 or not len(windows):
        return np.zeros((0, windows.shape[1]), np.float32)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(windows), max(1, round(share * len(windows))), replace=False)
    gains = 10.0 ** (-rng.uniform(*QUIET_DB_RANGE, size=len(chosen)) / 20.0)
    silent = np.zeros((max(1, len(windows) // 100), windows.shape[1]), np.float32)
    return np.concatenate([windows[np.sort(chosen)] * gains[:, None].astype(np.float32), silent])


def coloured_noise_windows(n: int, n_samples: int, seed: int) -> np.ndarray:
    """n windows (n, n_samples) float32 of stationary noise whose power falls as 1/f^a, a uniform in [0, 2]
    (white to brown), each at an RMS level uniform in NOISE_DB_RANGE dBFS. (Not augment.coloured_noise: that
    has three colours and is flat below 20 Hz; the measured cascades were distilled on this noise.)

    Known negatives of any colour and level: a stage 1 distilled on speech and a few recorded noises opened
    the gate on 97% of the hops of white noise at -15 dBFS, a noise it had never heard."""
    rng, out = np.random.default_rng(seed), []
    frequencies = np.fft.rfftfreq(n_samples, 1.0 / SAMPLE_RATE)
    frequencies[0] = frequencies[1]  # the DC bin is zeroed below; this only avoids dividing by zero
    for start in range(0, n, 64):  # 64 windows at a time: bounded memory for the complex spectra
        size = min(64, n - start)
        spectrum = np.fft.rfft(rng.standard_normal((size, n_samples)), axis=1)
        spectrum *= frequencies[None, :] ** (-rng.uniform(0.0, 2.0, (size, 1)) / 2.0)
        spectrum[:, 0] = 0.0
        noise = np.fft.irfft(spectrum, n_samples, axis=1)
        noise /= np.sqrt((noise**2).mean(axis=1, keepdims=True))
        noise *= 10.0 ** (rng.uniform(*NOISE_DB_RANGE, (size, 1)) / 20.0)
        out.append(np.clip(noise, -1.0, 1.0).astype(np.float32))  # as a sound card delivers it
    return np.concatenate(out) if out else np.zeros((0, n_samples), np.float32)


def split_longform(pairs: Sequence[ClipPair], spec: CascadeSpec) -> tuple[list[Path], list[ClipPair]]:
    """(files distilled as unlabelled audio, segments the gate is calibrated on) of the synthetic long form.

    A recipe without distill_audio (the quickstart: synthetic clips only) would give stage 1 no running speech
    to learn stage 2's view of; every k-th segment (k from longform_share) goes to distillation instead, the
    rest to the gate, so the call rate the gate records is measured on speech stage 1 did not hear."""
    if spec.distill_audio or spec.longform_share <= 0 or len(pairs) < 2:
        return [], list(pairs)
    every = max(2, round(1.0 / min(spec.longform_share, 0.5)))
    distilled = [root / clip.path for i, (clip, root) in enumerate(pairs) if i % every == 0]
    return distilled, [pair for i, pair in enumerate(pairs) if i % every != 0]


def _folders_files(paths: Sequence[str]) -> list[Path]:
    return long_audio_files(paths) if paths else []


def distillation_set(cascade: CascadeDetector, recipe: Recipe, pairs: Sequence[ClipPair], train: bool,
                     negative_files: Sequence[Path] = (),
                     unlabelled_files: Sequence[Path] = ()) -> DistillSet:  # fmt: skip
    """Stage-2-labelled windows of clips (+ unlabelled and negative audio when `train`)."""
    spec, stage2, words = recipe.model.cascade, cascade.stage2, cascade.wake_words
    augment = AugmentSettings(**{**recipe.train.augment, "noise_dirs": recipe.data.noise_dirs,
                                 "rir_dirs": recipe.data.rir_dirs}) if train else None  # fmt: skip
    dataset = WakeWordDataset(list(pairs), words, cascade.config.window_seconds, train=train, augment=augment,
                              seed=recipe.train.seed)  # fmt: skip
    audio, labels, mask = _labelled_windows(dataset, recipe.train.n_views if train else 1)
    limit = spec.max_stream_clips if train or spec.max_stream_clips is None else max(1, spec.max_stream_clips // 4)
    streamed, streamed_teacher = _stream_hops(stage2, pairs, spec.stream_hops_per_clip, limit, recipe.train.seed)
    parts = [(audio, labels, mask)]
    if train:
        n = spec.max_distill_windows
        unlabelled = [*_folders_files(spec.distill_audio), *unlabelled_files]
        unknown = _audio_windows(unlabelled, stage2.config, n // 2, recipe.train.seed)
        negative = _audio_windows(list(negative_files), stage2.config, n - len(unknown), recipe.train.seed + 1)
        made = coloured_noise_windows(spec.noise_windows, stage2.config.window_samples, recipe.train.seed)
        negative = np.concatenate([negative, quieter_windows(negative, spec.quiet_share, recipe.train.seed), made])
        parts += [(unknown, *_unlabelled(len(unknown), len(words))), (negative, *_negatives(len(negative), len(words)))]
    audio = np.concatenate([p[0] for p in parts])
    teacher = np.concatenate([_teacher(stage2, audio), streamed_teacher])  # streamed hops: scored already
    labels = np.concatenate([*(p[1] for p in parts), _unlabelled(len(streamed), len(words))[0]])
    mask = np.concatenate([*(p[2] for p in parts), _unlabelled(len(streamed), len(words))[1]])
    return DistillSet(np.concatenate([audio, streamed]), teacher, labels, mask)


def _unlabelled(n: int, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, n_words), np.float32), np.zeros((n, n_words), np.float32)


def _negatives(n: int, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, n_words), np.float32), np.ones((n, n_words), np.float32)


# -- the stages' configs ----------------------------------------------------------------------------------------


def stage1_config(spec: CascadeSpec, stage2: DetectorConfig) -> DetectorConfig:
    """The cheap first stage: same words and hop, its own (possibly shorter) window ending at the same time."""
    encoder = {}
    if spec.stage1_family == "transfer":
        encoder = {"name": spec.stage1_encoder, "revision": None, "trainable": "head", "top_k": 0}
    return DetectorConfig(family=spec.stage1_family, wake_words=stage2.wake_words,
                          window_seconds=spec.stage1_window_seconds or stage2.window_seconds,
                          hop_seconds=stage2.hop_seconds, encoder=encoder, head=dict(spec.stage1_head))  # fmt: skip


def _sub_config(config: DetectorConfig) -> dict[str, Any]:
    """A stage's config as stored inside the cascade's (its training record without the recipe, kept once)."""
    training = {k: v for k, v in config.training.items() if k not in ("recipe", "paths")}
    return config.replace(training=training).to_dict()


def cascade_config(recipe: Recipe, stage1: DetectorConfig, stage2: DetectorConfig) -> DetectorConfig:
    """The cascade's config before its gate is calibrated: stage 2's thresholds and calibration are its own."""
    from wakeword.pipeline import PATHS_NOTE, absolute_paths

    spec = recipe.model.cascade
    head = {"stage1": _sub_config(stage1), "stage2": _sub_config(stage2),
            "gate": {"unseen_margin": spec.unseen_margin},
            "distillation": {"weight": spec.distill_weight, "temperature": spec.temperature}}  # fmt: skip
    recipe_record = absolute_paths(recipe).to_dict()
    recipe_record["model"]["cascade"]["distill_audio"] = [str(Path(p).resolve()) for p in spec.distill_audio]
    return DetectorConfig(family="cascade", wake_words=stage2.wake_words, window_seconds=stage2.window_seconds,
                          hop_seconds=stage2.hop_seconds, head=head, thresholds=dict(stage2.thresholds),
                          calibration=dict(stage2.calibration),
                          training={"recipe": recipe_record, "paths": PATHS_NOTE})  # fmt: skip


# -- distillation -----------------------------------------------------------------------------------------------


def distill(cascade: CascadeDetector, recipe: Recipe, train_pairs: Sequence[ClipPair],
            val_pairs: Sequence[ClipPair], negative_files: Sequence[Path], state_dir: Path,
            on_epoch_end: Callable[[dict[str, float]], None] | None = None,
            unlabelled_files: Sequence[Path] = ()) -> list[dict[str, float]]:  # fmt: skip
    """Train stage 1 on stage 2's scores (stage 2 frozen) with the one trainer; returns the history.
    unlabelled_files: audio distilled besides the recipe's distill_audio (see split_longform)."""
    cascade.stage2.requires_grad_(False)
    with timed("distillation data"):
        train_set = distillation_set(cascade, recipe, train_pairs, True, negative_files, unlabelled_files)
        val_set = distillation_set(cascade, recipe, val_pairs, False)
    print(f"distillation: {len(train_set)} training and {len(val_set)} validation windows", flush=True)
    counts = train_set.counts()
    pos_weight = class_balance({w: counts[k] for k, w in enumerate(cascade.wake_words)}, cascade.wake_words)
    loss = get_family("cascade").compute_loss
    with timed("fitting stage 1"):
        result = fit(cascade, loss, train_set, val_set, recipe.train, state_dir, pos_weight, on_epoch_end)
    return result.history


# -- the gate ---------------------------------------------------------------------------------------------------


def _stage2_tracks(detector: Detector, clips: Sequence[ClipPair], long_audio: Sequence[ClipPair]) -> list[np.ndarray]:
    """Stage 2's score tracks (n_hops, n_words) of clips (padded as evaluated) then long audio (streamed
    whole). The gate needs only which hops reach stage 2's thresholds, so the long audio is float32 only where
    an int8 first pass comes within REFINE_MARGIN_LOGITS of them (calibration.score_long_above; a frozen
    encoder's int8 and float32 frames mostly come from the disk cache that stage 2's own calibration filled:
    the quickstart's 30 minutes took 111 s in float32)."""
    from wakeword.calibration import REFINE_MARGIN_LOGITS, score_long_above
    from wakeword.pipeline import score_pairs

    floors = np.array([detector.config.threshold(w) - REFINE_MARGIN_LOGITS for w in detector.wake_words])
    scored = [
        *score_pairs(detector, clips, "gate: scoring validation"),
        *score_long_above(detector, long_audio, floors),
    ]
    return [np.asarray(s.track) for s in scored]


def gate_for(first: np.ndarray, firing: np.ndarray, recall: float, slack: float) -> float:
    """The highest stage-1 logit that passes at least `recall` of the firing hops, lowered by `slack`.

    first: (n_hops,) stage-1 logits; firing: (n_hops,) bool, where stage 2 reaches its threshold.
    No firing hop: -inf (stage 2 runs on every hop: nothing to calibrate the gate on)."""
    chosen = np.sort(first[firing])
    if not len(chosen):
        return float("-inf")
    n_pass = math.ceil(recall * len(chosen) - 1e-9)
    return float(chosen[len(chosen) - n_pass] - slack)


def calibrate_gate(cascade: CascadeDetector, spec: CascadeSpec, clips: Sequence[ClipPair],
                   long_audio: Sequence[ClipPair]) -> GateSettings:  # fmt: skip
    """Gate per word from validation clips (padded as evaluated) and calibration audio (streamed whole)."""
    config = cascade.config

    def signals() -> Iterator[np.ndarray]:  # stage 1 reads the end of the cascade's windows: pad as the cascade
        yield from (padded_clip(config, load_audio(root / clip.path)) for clip, root in clips)
        yield from (load_audio(root / clip.path) for clip, root in long_audio)

    with timed("gate calibration"):
        tracks, tracks2 = (
            list(score_signals(cascade.stage1, signals())),
            _stage2_tracks(cascade.stage2, clips, long_audio),
        )
        first, second = np.concatenate(tracks), np.concatenate(tracks2)
    labels = [clip.labels for clip, _ in [*clips, *long_audio]]
    logits, record = {}, {"target_recall": spec.gate_recall, "slack": spec.gate_slack, "words": {}}
    for k, word in enumerate(config.wake_words):
        firing = second[:, k] >= config.threshold(word)
        if not firing.any():  # stage 2 never fires here: the gate must pass each positive clip's peak hop
            firing = _peak_rows(tracks2, [lab.get(word) == 1 for lab in labels], k)
        logits[word] = gate_for(first[:, k], firing, spec.gate_recall, spec.gate_slack)
        recall = float((first[firing, k] >= logits[word]).mean()) if firing.any() else None
        record["words"][word] = {"firing_hops": int(firing.sum()), "recall": recall}
    opened = (first >= np.array([logits[w] for w in config.wake_words])).any(axis=1)
    says_none = [not any(lab.values()) for lab in labels]
    negative = np.concatenate([np.full(len(t), flag) for t, flag in zip(tracks, says_none, strict=True)])
    record["hops"], record["call_rate"] = len(first), float(opened.mean())
    record["call_rate_negative_audio"] = float(opened[negative].mean()) if negative.any() else None
    record["measured_on"] = f"{len(clips)} validation clip(s), {len(long_audio)} segment(s) of long audio"
    recalls = [r["recall"] for r in record["words"].values() if r["recall"] is not None]
    return GateSettings(logits, spec.unseen_margin, min(recalls) if recalls else None, record)


def _peak_rows(tracks: Sequence[np.ndarray], positive: Sequence[bool], column: int) -> np.ndarray:
    """(n_hops,) bool over the concatenated tracks: the highest-scoring hop of each positive track."""
    rows = [np.zeros(len(t), bool) for t in tracks]
    for row, track, is_positive in zip(rows, tracks, positive, strict=True):
        if is_positive and len(track):
            row[int(np.argmax(track[:, column]))] = True
    return np.concatenate(rows) if rows else np.zeros(0, bool)


# -- the whole recipe -------------------------------------------------------------------------------------------


def train_cascade(recipe: Recipe, out_dir: Path, on_epoch_end: Callable[[dict[str, float]], None] | None = None,
                  keep_thresholds: dict[str, float] | None = None, keep_previous: bool = False) -> Any:  # fmt: skip
    """Stage 2 as its own family's recipe, stage 1 distilled from it, the gate calibrated; saves the cascade
    in `out_dir` and returns the pipeline's TrainReport (its words: the cascade's test report)."""
    from wakeword.pipeline import _train_recipe, collect_clips, split_clips

    started, spec = time.monotonic(), recipe.model.cascade
    staging = out_dir.parent / f".{out_dir.name}.stage2"
    shutil.rmtree(staging, ignore_errors=True)
    if spec.stage2_model:  # a trained detector becomes stage 2 as it is
        stage2 = load_detector(spec.stage2_model)
        stage2_report = _existing_report(stage2)
    else:
        stage2_recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, family=spec.stage2_family))
        stage2_report = _train_recipe(stage2_recipe, staging, on_epoch_end, keep_thresholds=keep_thresholds)
        stage2 = load_detector(staging)
    pairs, hard = collect_clips(recipe)
    splits = split_clips(pairs, recipe)
    long_train, long_calibration = negative_audio_pairs(recipe)
    seed_everything(recipe.train.seed)
    stage1 = get_family(spec.stage1_family).build_model(stage1_config(spec, stage2.config))
    cascade = CascadeDetector(cascade_config(recipe, stage1.config, stage2.config), stage1, stage2)
    negative_files = [root / c.path for c, root in long_train] + _folders_files(recipe.data.noise_dirs)
    longform_distilled, longform_gate = split_longform(calibration_longform(recipe), spec)
    history = distill(cascade, recipe, [*splits.train, *hard], splits.val or splits.train, negative_files,
                      out_dir / STATE_DIR / "stage1", on_epoch_end, longform_distilled)  # fmt: skip
    cascade.eval()
    gate = calibrate_gate(cascade, spec, splits.val or splits.train, [*long_calibration, *longform_gate])
    _print_gate(gate)
    cascade.config = _with_gate(cascade.config, gate)
    cascade.gate = gate
    words = _test_report(cascade, recipe, splits.test or splits.val, out_dir)
    save_detector(cascade, out_dir, keep_previous=keep_previous)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)
    return _report(out_dir, cascade, words, stage2_report, history, time.monotonic() - started)


def _existing_report(stage2: Detector) -> Any:
    """The TrainReport of a detector trained before (from its config's training record)."""
    from wakeword.evaluate import WordReport
    from wakeword.pipeline import TrainReport

    training = stage2.config.training
    words = {w: WordReport.from_dict(r) for w, r in training.get("test", {}).items()}
    return TrainReport("", words, dict(training.get("counts", {})), [], 0.0, dict(stage2.config.calibration))


def _with_gate(config: DetectorConfig, gate: GateSettings) -> DetectorConfig:
    head = {**config.head, "gate": dataclasses.asdict(gate)}
    return config.replace(head=head, calibration={**config.calibration, "cascade_gate": gate.calibration})


def _print_gate(gate: GateSettings) -> None:
    record = gate.calibration
    rate = record["call_rate"]
    for word, logit_ in gate.logits.items():
        entry = record["words"][word]
        print(f"{word}: gate at stage-1 logit {logit_:.3f}, recall {entry['recall']} of {entry['firing_hops']} "
              f"stage-2 firing hop(s); stage 2 runs on {rate:.1%} of validation hops", flush=True)  # fmt: skip


def _test_report(cascade: CascadeDetector, recipe: Recipe, pairs: Sequence[ClipPair], out_dir: Path) -> dict:
    """The cascade's FRR / FA/h on the held-out clips at its (stage 2's) thresholds, and a DET plot."""
    from wakeword.pipeline import score_pairs

    config, refractory = cascade.config, recipe.evaluate.refractory_seconds
    with timed("test"):
        scored = score_pairs(cascade, pairs, "scoring test")
    # measured as stage 2's test was (wakeword.pipeline): the synthetic near misses are counted apart, not
    # as false accepts, or the two reports of one folder would count different negatives
    test, near = split_near_misses(pairs, scored)
    words = {w: word_report(config, test, w, config.threshold(w), refractory) for w in config.wake_words}
    thresholds = {w: config.threshold(w) for w in config.wake_words}
    calibration = {**config.calibration, "words": {w: dict(e) for w, e in config.calibration.get("words", {}).items()}}
    for word, entry in near_miss_record(config, near, thresholds).items():
        calibration["words"].setdefault(word, {})["test_near_misses"] = entry
    cascade.config = config.replace(
        calibration=calibration,
        training={**config.training, "test": {w: dataclasses.asdict(r) for w, r in words.items()}},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_det_plot(config, test, out_dir / "det.png", refractory, "DET of the cascade on the held-out split")
    return words


def _report(
    out_dir: Path, cascade: CascadeDetector, words: dict, stage2_report: Any, history: list, seconds: float
) -> Any:
    from wakeword.pipeline import TrainReport
    from wakeword.timing import active_stages

    counts = {**stage2_report.counts, "stage2_test": {w: dataclasses.asdict(r) for w, r in stage2_report.words.items()}}
    report = TrainReport(str(out_dir), words, counts, stage2_report.history + history, round(seconds, 1),
                         dict(cascade.config.calibration), active_stages())  # fmt: skip
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report
