"""The library behind the Gradio app (app.py): recorded data sets, training, saved models, live detection.

Everything lives under one data folder:
    datasets/<name>/          clips recorded in the browser (a DataSet: clips.jsonl + audio/); the Listen
                              and correct verdicts go to datasets/corrections/ unless another is named
    models/<name>/            trained detectors (config.json, model.safetensors, report.json, det.png)
    exports/<name>[-int8]/    ONNX exports for wakeword-runtime (graph(s), runtime.json) and their .zip
    synth/<settings>/<word>/  synthetic speech, reused by every training run with the same settings

The browser is not trusted: every name it sends goes through `safe_name`, every path is resolved and
checked to lie inside the data folder (`inside`), uploads are limited in bytes and seconds, and recipe
overrides may not name folders. Clip writes go through DataSet (atomic, locked).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wakeword.audio import SAMPLE_RATE, AudioError, check_audio, load_audio, resample
from wakeword.checkpoint import ModelError, load_detector, read_config
from wakeword.data.clips import DataSet, ManifestError, new_clip_id, normalize_word
from wakeword.evaluate import WordReport
from wakeword.models import FAMILIES as MODEL_FAMILIES
from wakeword.models.base import Detector
from wakeword.recipes import Recipe, RecipeError, load_recipe
from wakeword.timing import StageTimer, format_stages

if TYPE_CHECKING:  # live.py imports this module
    from wakeword.live import LiveSession

DATASETS, MODELS, SYNTH, EXPORTS = "datasets", "models", "synth", "exports"
CORRECTIONS = "corrections"  # default data set of the Listen and correct verdicts
VERDICTS = {"right": 1, "wrong": 0}  # a live activation judged by the user -> its clip's label
LABELS = {"wake word": 1, "not wake word": 0, "background": 0}  # label shown in the app -> clip label
# A minutes-long recording of the user's room (talk, TV, the fan) with no wake word in it: not a training
# clip but negative audio (recipe data.negative_audio), cut into windows, mined, and a quarter calibrates.
ROOM = "room recording"
FAMILIES = tuple(MODEL_FAMILIES)
FREEZE_STRATEGIES = ("head", "top-k", "full")
# the Train tab's progress bar: stage (wakeword.timing) -> (fraction done when it starts, what it says)
TRAIN_STAGES = {
    "synthesis": (0.0, "synthesis: making speech (first run with these settings only)"),
    "quality check": (0.05, "quality check: transcribing the synthetic positives"),
    "encoding": (0.2, "encoding: the training clips through the frozen encoder"),
    "fitting": (0.35, "fitting"),
    "calibration": (0.85, "calibration: scoring the validation clips"),
    "test": (0.92, "test: scoring the held-out clips"),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}")
_WORD = re.compile(r"[a-z][a-z' -]{0,48}")
# Recipe keys the app lets a user override; folders (data.train, noise_dirs, synth.out, encoder) are not
# among them, so an override cannot make the server read or write outside the data folder.
CASCADE_RECIPE = "cascade"  # the recipe that puts a cascade in front of a trained model
CASCADE_STAGE2_FAMILIES = ("transfer", "e2e")  # the stage 2 families the cascade recipe is built and tested for
OVERRIDABLE = ("train.", "evaluate.", "model.head", "model.top_k", "model.window_seconds",
               "model.hop_seconds", "data.synth.n_", "data.synth.seed", "data.synth.qc", "data.val_fraction",
               "data.test_fraction")  # fmt: skip


class StudioError(ValueError):
    """A request the app refuses; the message is shown to the user as is."""


@dataclass(frozen=True)
class StudioLimits:
    """What the app accepts from a browser."""

    min_clip_seconds: float = 0.3
    max_clip_seconds: float = 5.0
    max_upload_bytes: int = 10 * 1024 * 1024  # a 5 s clip is < 1 MB even as 48 kHz stereo WAV
    max_room_seconds: float = 600.0  # a room recording: up to 10 minutes (several can be recorded)
    max_room_upload_bytes: int = 10 * 1024 * 1024  # the app's upload limit: ~1.7 min of a 48 kHz browser WAV
    max_chunk_seconds: float = 5.0  # one live-stream chunk (the browser sends ~0.5 s)
    history_seconds: float = 10.0  # live score plot span
    idle_seconds: float = 30.0  # a live session's scorer thread ends after this long without audio


def safe_name(name: str, what: str = "name") -> str:
    """A plain folder or clip name: letters, digits, '.', '_', '-', spaces; no '..', slashes or absolute
    paths; at most 64 characters. Returns the stripped name; raises StudioError otherwise."""
    name = (name or "").strip()
    if not name:
        raise StudioError(f"{what}: please give a name")
    if "/" in name or "\\" in name or "\0" in name or ".." in name or os.path.isabs(name):
        raise StudioError(f"{what} {name!r}: must be a plain name (no '..', slashes or absolute paths)")
    if not _NAME.fullmatch(name):
        raise StudioError(f"{what} {name!r}: use letters, digits, '.', '_', '-' and spaces (at most 64)")
    return name


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """root/parts resolved (symlinks followed); raises StudioError unless it lies strictly inside root."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path == base or not path.is_relative_to(base):
        raise StudioError(f"{'/'.join(parts)!r}: outside the data folder")
    return path


def check_wake_word(word: str) -> str:
    """Normalised wake word ('Hey  Computer' -> 'hey computer'); letters, spaces, apostrophes, hyphens."""
    word = normalize_word(word or "")
    if not _WORD.fullmatch(word):
        raise StudioError(f"wake word {word!r}: use letters and spaces only (at most 50 characters)")
    return word


def as_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM scaled to [-1, 1) (int16 / 32768), float passed through; as float32, same shape."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    return samples.astype(np.float32, copy=False)


def to_float_mono(rate: int, samples: np.ndarray) -> np.ndarray:
    """Browser audio (rate, (n,) or (n, channels) int or float array) -> (n',) float32 at 16 kHz."""
    return resample(check_audio(as_float(samples), "recording"), int(rate), SAMPLE_RATE)


AudioInput = str | os.PathLike | tuple[int, np.ndarray]


@dataclass(frozen=True)
class ModelInfo:
    """A saved model as the Models tab shows it."""

    name: str
    config: dict[str, Any]
    metrics_markdown: str
    det_png: Path | None


class Studio:
    """The app's operations on one data folder. Every method raises StudioError with a user-facing message."""

    def __init__(
        self, root: str | os.PathLike, recipes_dir: str | os.PathLike | None = None, limits: StudioLimits | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.recipes_dir = Path(recipes_dir) if recipes_dir else Path(__file__).resolve().parent.parent / "recipes"
        self.limits = limits or StudioLimits()
        for folder in (DATASETS, MODELS, SYNTH):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._detectors: dict[tuple[str, int], Detector] = {}
        self._lock = threading.Lock()

    # -- folders ----------------------------------------------------------------------------------------------
    def dataset_dir(self, name: str) -> Path:
        return inside(self.root, DATASETS, safe_name(name, "data set"))

    def model_dir(self, name: str) -> Path:
        return inside(self.root, MODELS, safe_name(name, "model"))

    def datasets(self) -> list[str]:
        return sorted(p.name for p in (self.root / DATASETS).iterdir() if (p / "clips.jsonl").is_file())

    def models(self) -> list[str]:
        return sorted(p.name for p in (self.root / MODELS).iterdir() if (p / "config.json").is_file())

    def cascade_candidates(self) -> list[str]:
        """The models a cascade can be built in front of (CASCADE_STAGE2_FAMILIES; unreadable ones are left out)."""
        found = []
        for name in self.models():
            with contextlib.suppress(ModelError):  # an unreadable model is listed, and explained, elsewhere
                if read_config(self.model_dir(name)).family in CASCADE_STAGE2_FAMILIES:
                    found.append(name)
        return found

    def _open(self, dataset: str) -> DataSet:
        folder = self.dataset_dir(dataset)
        if not (folder / "clips.jsonl").is_file():
            raise StudioError(f"data set {dataset!r} does not exist yet: record a clip first")
        return DataSet(folder)

    # -- recording ----------------------------------------------------------------------------------------------
    def read_recording(self, audio: AudioInput | None, room: bool = False) -> np.ndarray:
        """A browser recording or upload as (n_samples,) float32 16 kHz, within the size and length limits
        (a clip's, or with `room` a room recording's)."""
        if audio is None:
            raise StudioError("no recording: press record, say the phrase, then stop")
        limits = self.limits
        max_bytes, max_seconds = (limits.max_room_upload_bytes, limits.max_room_seconds) if room else (
            limits.max_upload_bytes, limits.max_clip_seconds)  # fmt: skip
        try:
            if isinstance(audio, tuple):
                samples = to_float_mono(*audio)
            else:
                size = Path(audio).stat().st_size
                if size > max_bytes:
                    raise StudioError(f"the file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
                samples = load_audio(audio, max_seconds=max_seconds)
        except (AudioError, OSError) as error:
            raise StudioError(f"cannot read the recording: {error}") from None
        return self.check_length(samples, max_seconds)

    def check_length(self, samples: np.ndarray, max_seconds: float | None = None) -> np.ndarray:
        seconds, low = len(samples) / SAMPLE_RATE, self.limits.min_clip_seconds
        high = self.limits.max_clip_seconds if max_seconds is None else max_seconds
        if not low <= seconds <= high:
            hint = "record a little longer" if seconds < low else "trim it or say the phrase once per clip"
            raise StudioError(f"the clip is {seconds:.2f} s long; clips must be {low:g}-{high:g} s ({hint})")
        return samples

    def save_clip(self, dataset: str, wake_word: str, label: str, audio: AudioInput | None, speaker: str = "") -> str:
        """Save a recording into data set `dataset` (created on first use) labelled for `wake_word`.

        label: one of LABELS, or ROOM (minutes of the room without the wake word: stored unlabelled, and
        used as negative audio when training). Returns the new clip id. Clips without a speaker name are
        the app user's ("me"): with few speakers every clip trains the model (wakeword.pipeline.split_clips).
        """
        word = check_wake_word(wake_word)
        if label not in (*LABELS, ROOM):
            raise StudioError(f"label {label!r}: choose one of {', '.join((*LABELS, ROOM))}")
        speaker = safe_name(speaker, "speaker") if speaker and speaker.strip() else "me"
        samples = self.read_recording(audio, room=label == ROOM)
        clip_id = new_clip_id("rec-")
        dataset_obj = DataSet.create(self.dataset_dir(dataset))
        labels = {} if label == ROOM else {word: LABELS[label]}
        text = word if labels.get(word) else ""
        dataset_obj.add_audio(samples, labels, "recorded", speaker=speaker, text=text, meta={"kind": label},
                              clip_id=clip_id)  # fmt: skip
        return clip_id

    def room_recordings(self, dataset: str) -> list[Path]:
        """Audio files of the data set's room recordings (negative audio for training and calibration)."""
        if dataset not in self.datasets():
            return []
        store = self._open(dataset)
        return [store.audio_path(clip) for clip in store.clips() if clip.meta.get("kind") == ROOM]

    def clips_table(self, dataset: str) -> list[list[Any]]:
        """Rows [clip id, label, wake word, seconds, speaker], newest first."""
        if dataset not in self.datasets():
            return []
        rows = []
        for clip in self._open(dataset).clips():
            word, value = next(iter(clip.labels.items()), (clip.text, 0))
            label = clip.meta.get("kind") or ("wake word" if value else "not wake word")
            rows.append([clip.id, label, word, round(clip.duration_seconds, 2), clip.speaker])
        return rows[::-1]

    def dataset_summary(self, dataset: str) -> str:
        """One line of counts per label, with the guidance's targets."""
        rows = self.clips_table(dataset)
        counts = {label: sum(1 for row in rows if row[1] == label) for label in LABELS}
        text = ", ".join(f"{n} {label}" for label, n in counts.items())
        room_minutes = sum(row[3] for row in rows if row[1] == ROOM) / 60
        need = max(0, 10 - counts["wake word"])
        advice = f"record about {need} more wake-word clips" if need else "enough to train; more variety still helps"
        room = f"{room_minutes:.1f} min of room recording" + ("" if room_minutes >= 3 else " (record 3-10 min)")
        return f"**{dataset}**: {text}, {room} ({advice})."

    def clip_audio(self, dataset: str, clip_id: str) -> tuple[int, np.ndarray]:
        """(16000, samples) of a saved clip, for playback."""
        store = self._open(dataset)
        try:
            return SAMPLE_RATE, store.load(store.get(safe_name(clip_id, "clip")))
        except (KeyError, ManifestError, AudioError) as error:
            raise StudioError(str(error).strip("'\"")) from None

    def delete_clip(self, dataset: str, clip_id: str) -> None:
        try:
            self._open(dataset).delete(safe_name(clip_id, "clip"))
        except KeyError as error:
            raise StudioError(str(error).strip("'\"")) from None

    # -- recipes and training -------------------------------------------------------------------------------------
    def recipes(self) -> dict[str, Path]:
        """Recipe name (file stem) -> path, for every YAML in the recipes folder that is a training recipe."""
        found = {}
        for path in sorted(self.recipes_dir.glob("*.yaml")):
            try:
                load_recipe(path)
            except RecipeError:
                continue  # e.g. compare.yaml: a comparison plan, not a recipe
            found[path.stem] = path
        return found

    def recipe_model(self, recipe: str) -> tuple[str, str]:
        """(family, freeze strategy) that recipe `recipe` uses."""
        paths = self.recipes()
        if recipe not in paths:
            raise StudioError(f"unknown recipe {recipe!r} (known: {', '.join(paths)})")
        model = load_recipe(paths[recipe]).model
        return model.family, model.trainable

    def build_recipe(
        self,
        recipe: str,
        wake_word: str,
        dataset: str | None,
        family: str | None = None,
        trainable: str | None = None,
        overrides: Sequence[str] = (),
    ) -> Recipe:
        """The recipe `recipe` for `wake_word`, trained on the recorded `dataset` plus the recipe's synthetic data."""
        built = self._load(recipe, [*self._data_settings([check_wake_word(wake_word)], dataset)], overrides)
        return self._adjust(built, family, trainable)

    def build_cascade_recipe(self, model: str, dataset: str | None, overrides: Sequence[str] = ()) -> Recipe:
        """The cascade recipe in front of this studio's trained model `model`, which becomes stage 2 as it is: the
        model's wake words, the recorded `dataset` plus the recipe's synthetic data. Only stage 1 and the gate
        train (minutes), and the cascade then listens for a small fraction of the model's cost."""
        info = self.model_info(model)  # refuses a name that is not a model here
        if info.config["family"] == "cascade":
            raise StudioError(f"model {model!r} is already a cascade: pick the detector it was built on")
        if info.config["family"] not in CASCADE_STAGE2_FAMILIES:
            allowed = " or ".join(CASCADE_STAGE2_FAMILIES)
            raise StudioError(f"model {model!r} is a {info.config['family']} detector; a cascade wakes a {allowed} one")
        stage2 = f"model.cascade.stage2_model={json.dumps(str(self.model_dir(model)))}"
        settings = [*self._data_settings(info.config["wake_words"], dataset), stage2]
        return self._adjust(self._load(CASCADE_RECIPE, settings, overrides), None, None)

    def _data_settings(self, words: Sequence[str], dataset: str | None) -> list[str]:
        """Recipe settings for the wake words and the recorded `dataset` (its clips and its room recordings)."""
        train = [str(self._open(dataset).root)] if dataset else []
        room = [str(path) for path in self.room_recordings(dataset)] if dataset else []
        return [f"wake_words={json.dumps(list(words))}", f"data.train={json.dumps(train)}",
                f"data.negative_audio={json.dumps(room)}"]  # fmt: skip

    def _load(self, recipe: str, settings: Sequence[str], overrides: Sequence[str]) -> Recipe:
        """Recipe `recipe` with the studio's own settings and the user's overrides (only OVERRIDABLE keys)."""
        paths = self.recipes()
        if recipe not in paths:
            raise StudioError(f"unknown recipe {recipe!r} (known: {', '.join(paths)})")
        for item in overrides:
            if not item.partition("=")[0].strip().startswith(OVERRIDABLE):
                raise StudioError(f"setting {item!r} cannot be changed here (allowed: {', '.join(OVERRIDABLE)})")
        try:
            return load_recipe(paths[recipe], [*settings, *overrides])
        except RecipeError as error:
            raise StudioError(str(error)) from None

    def _adjust(self, recipe: Recipe, family: str | None, trainable: str | None) -> Recipe:
        model = recipe.model
        if family and family != model.family:
            if family not in FAMILIES:
                raise StudioError(f"family {family!r}: choose one of {', '.join(FAMILIES)}")
            model = replace(model, family=family, head={})  # another family's head settings do not apply
        if trainable and model.family == "transfer":
            if trainable not in FREEZE_STRATEGIES:
                raise StudioError(f"freeze strategy {trainable!r}: choose one of {', '.join(FREEZE_STRATEGIES)}")
            model = replace(model, trainable=trainable)
        data = recipe.data
        if data.synth is not None:
            spec = data.synth
            key = f"p{spec.n_positives}-c{spec.n_confusables}-g{spec.n_generic}-s{spec.seed}-qc{int(spec.qc)}"
            data = replace(data, synth=replace(spec, out=str(self.root / SYNTH / key)))
        if not data.train and data.synth is None:
            raise StudioError("nothing to train on: record clips or pick a recipe with synthetic data")
        return replace(recipe, model=model, data=data)

    def train(
        self, name: str, recipe: Recipe, progress: Callable[[float, str], None] | None = None, overwrite: bool = False
    ) -> ModelInfo:
        """Synthesise (first time only), train, calibrate and save the model `name`; returns its info.

        progress(fraction in [0, 1], message) is called at each stage and after every epoch."""
        from wakeword.pipeline import synthesize_if_needed, train_recipe

        out_dir, report = self.model_dir(name), progress or (lambda fraction, message: None)
        if (out_dir / "config.json").exists() and not overwrite:
            raise StudioError(f"a model named {name!r} exists: choose another name or allow overwriting")
        timer = StageTimer(lambda stage: report(*TRAIN_STAGES.get(stage, (0.9, stage))))
        report(0.0, "preparing")
        with timer.active():  # the first run with these synthesis settings makes the data: stage "synthesis"
            synthesize_if_needed(recipe)
        epochs = max(1, recipe.train.epochs)
        start, end = TRAIN_STAGES["fitting"][0], TRAIN_STAGES["calibration"][0]

        def on_epoch_end(row: dict[str, float]) -> None:
            done, epoch = (int(row["epoch"]) + 1) / epochs, int(row["epoch"]) + 1
            report(start + (end - start) * done, f"fitting: epoch {epoch}/{epochs}, val loss {row['val_loss']:.4f}")

        train_recipe(recipe, out_dir, on_epoch_end=on_epoch_end, stages=timer)
        report(1.0, f"saved; {format_stages(timer.report())}")
        self._detectors.clear()
        return self.model_info(name)

    # -- saved models ------------------------------------------------------------------------------------------------
    def model_info(self, name: str) -> ModelInfo:
        folder = self.model_dir(name)
        try:
            config = read_config(folder)
        except ModelError as error:
            raise StudioError(str(error)) from None
        metrics = config.training.get("test", {})
        report_path = folder / "report.json"
        if report_path.is_file():
            metrics = json.loads(report_path.read_text(encoding="utf-8")).get("words", metrics)
        det = folder / "det.png"
        table = metrics_markdown(metrics, config.thresholds) + calibration_markdown(config.calibration)
        return ModelInfo(name, config.to_dict(), table, det if det.is_file() else None)

    def threshold(self, name: str) -> float:
        """The calibrated threshold of the model's first wake word (the live slider's starting point)."""
        config = self.model_info(name).config
        return float(config.get("thresholds", {}).get(config["wake_words"][0], 0.0))

    def export(self, name: str, int8: bool = False) -> Path:
        """Export the saved model `name` for wakeword-runtime; returns the zip of the exported folder."""
        from wakeword.export import export_detector, zip_export

        folder = inside(self.root, EXPORTS, f"{safe_name(name, 'model')}{'-int8' if int8 else ''}")
        folder.parent.mkdir(exist_ok=True)
        try:
            export_detector(self.model_dir(name), folder, int8=int8)
        except (ModelError, ValueError) as error:  # ExportError is a ValueError: the phoneme family says why
            raise StudioError(str(error)) from None
        return zip_export(folder, folder.with_name(f"{folder.name}.zip"))

    def detector(self, name: str) -> Detector:
        """The saved model `name`, loaded once and reused while its config.json is unchanged."""
        folder = self.model_dir(name)
        try:
            key = (str(folder), (folder / "config.json").stat().st_mtime_ns)
        except OSError:
            raise StudioError(f"no model named {name!r}") from None
        with self._lock:
            if key not in self._detectors:
                try:
                    self._detectors = {key: load_detector(folder)}  # one at a time: models can be large
                except ModelError as error:
                    raise StudioError(str(error)) from None
            return self._detectors[key]

    # -- listen and correct -------------------------------------------------------------------------------------
    def correct(self, live: LiveSession, activation_id: int, verdict: str, dataset: str = CORRECTIONS) -> str:
        """Save a live activation as a clip labelled by the user's verdict ("right": the wake word was said,
        "wrong": a false accept) in `dataset`; a changed verdict replaces the earlier clip. Returns the clip id."""
        if verdict not in VERDICTS:
            raise StudioError(f"verdict must be one of {list(VERDICTS)}")
        activation = live.activation(activation_id)
        folder = self.dataset_dir(dataset)
        target = DataSet.create(folder)
        if activation.clip_id and activation.dataset == str(folder):
            with contextlib.suppress(KeyError):  # deleted by hand in the Record tab meanwhile
                target.delete(activation.clip_id)
        meta = {"model": live.model_name, "time_seconds": activation.time_seconds, "score": activation.score}
        clip = target.add_audio(activation.audio, {activation.word: VERDICTS[verdict]}, "corrected", meta=meta)
        activation.verdict, activation.clip_id, activation.dataset = verdict, clip.id, str(folder)
        return clip.id

    def retrain(
        self, name: str, dataset: str = CORRECTIONS, progress: Callable[[float, str], None] | None = None
    ) -> str:
        """Retrain model `name` with the corrections in `dataset`, in place (the old version is kept)."""
        from wakeword.mining import retrain

        folder, corrections = self.model_dir(name), self._open(dataset)
        if not len(corrections):
            raise StudioError(f"data set {dataset!r} holds no corrections yet: mark activations right or wrong")
        report = progress or (lambda fraction, message: None)
        report(0.0, f"retraining {name} with {len(corrections)} correction(s)")
        try:
            result = retrain(
                folder, [corrections.root], on_epoch_end=lambda row: report(0.5, f"epoch {int(row['epoch']) + 1}")
            )
        except (ModelError, RecipeError, FileNotFoundError, ValueError) as error:
            raise StudioError(f"cannot retrain {name!r}: {error}") from None
        report(1.0, "saved")
        n_clips = len(corrections)
        seconds = f"{result.seconds:.1f} s"
        return f"Retrained **{name}** with {n_clips} correction(s) in {seconds}; the previous version is kept."

    def rollback(self, name: str) -> str:
        """Put back the version of model `name` that the last retrain replaced."""
        from wakeword.checkpoint import rollback_detector

        try:
            rollback_detector(self.model_dir(name))
        except ModelError as error:
            raise StudioError(str(error)) from None
        return f"Rolled **{name}** back to its previous version."


def metrics_markdown(words: dict[str, Any], thresholds: dict[str, float]) -> str:
    """A markdown table of the held-out FRR and FA/h per wake word."""
    if not words:
        return "No held-out metrics recorded for this model."
    lines = [
        "| wake word | threshold (logit) | FRR | false accepts, FA/h (95% interval) | ROC AUC | positives "
        "| negatives |",
        "|---|---|---|---|---|---|---|",
    ]
    for word, m in words.items():
        auc = "-" if m.get("roc_auc") is None else f"{m['roc_auc']:.3f}"
        threshold = m.get("threshold", thresholds.get(word, float("nan")))
        fa = WordReport.from_dict(m).false_accepts()
        lines.append(f"| {word} | {threshold:.2f} | {m['frr']:.1%} | {fa} | {auc} "
                     f"| {m['n_positive']} | {m['n_negative']} |")  # fmt: skip
    return "\n".join(lines)


def calibration_markdown(calibration: dict[str, Any]) -> str:
    """What the thresholds rest on, per word, with the warning of a model calibrated on too little audio."""
    lines = []
    for word, entry in calibration.get("words", {}).items():
        minutes = 60 * entry.get("negative_hours", 0.0)
        line = f"- **{word}**: threshold set on {minutes:.1f} min of negative audio"
        if entry.get("n_near_misses"):
            line += f"; it accepts {entry['accepted']} of {entry['n_near_misses']} synthetic near misses (not counted)"
        if "warning" in entry:
            line += f". **Warning: {entry['warning']}.**"
        lines.append(line)
    return ("\n\nCalibration:\n" + "\n".join(lines)) if lines else ""
