"""Recipe schema: frozen dataclasses loaded from YAML. Recipes are data; one trainer runs them all.

Unknown keys are errors naming the key; values marked REQUIRED have no sensible default and must be
given (audiocraft's `???`). `--set section.key=value` overrides any value, parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wakeword.audio import HOP_SECONDS, WINDOW_SECONDS

REQUIRED: Any = "???"


class RecipeError(ValueError):
    """A recipe that cannot run: the message names the file and the key."""


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class SynthSpec:
    n_positives: int = _help("synthetic clips of each wake word", 300)
    n_confusables: int = _help('near-miss negatives per wake word ("hey commuter")', 150)
    n_generic: int = _help("random negative words and sentences", 150)
    out: str = _help("data-set folder for the synthetic clips (reused when it already holds them)", REQUIRED)
    qc: bool = _help("drop synthetic positives whose ASR transcript misses the wake word", True)
    seed: int = _help("random seed of voices and texts", 0)


@dataclass(frozen=True)
class DataSpec:
    train: tuple[str, ...] = _help("data-set folders (recorded, corpus or synthetic clips)", ())
    synth: SynthSpec | None = _help("generate synthetic speech first (omit to use only `train`)", None)
    hard_negatives: tuple[str, ...] = _help(
        "data-set folders of mined false triggers and corrected activations (`wakeword mine`, the app's "
        "Listen and correct); always trained on, never held out",
        (),
    )
    hard_negative_weight: float = _help("loss weight of a mined or corrected clip relative to other clips", 2.0)
    negative_audio: tuple[str, ...] = _help(
        "files or folders of long audio that never says the wake word (podcasts, TV, a recording of your room): "
        "cut into training windows, mined in rounds during training, and a quarter of it calibrates",
        (),
    )
    mining_rounds: int = _help("train -> mine negative_audio at mining_threshold -> retrain, this many times", 2)
    mining_threshold: float = _help("logit at which negative audio counts as a near miss while mining", -2.0)
    max_mined_per_round: int = _help("highest-scoring mined windows added per round", 300)
    same_channel_negatives: tuple[str, ...] = _help(
        "negatives cut from every real positive: background (the audio around the word), cut-start / cut-end "
        "(the word cut short), reversed. Off by default: with negative audio and mining, all four made 10- and "
        "25-clip models worse on real speakers (docs/accuracy.md)",
        (),
    )
    noise_dirs: tuple[str, ...] = _help("folders of background noise for augmentation", ())
    rir_dirs: tuple[str, ...] = _help("folders of room impulse responses for augmentation", ())
    hold_out_real_min_speakers: int = _help(
        "hold some real recordings out for validation and test only when they come from at least this many "
        "speakers; with fewer, all of them train the model (a speaker's clips are few and precious)",
        6,
    )
    val_fraction: float = _help("share of speaker/session groups kept for validation", 0.15)
    test_fraction: float = _help("share of groups held out for the final FRR / FA/h report", 0.15)
    max_real_clips: int | None = _help("use at most this many recorded/corpus positives (learning curves)", None)


@dataclass(frozen=True)
class CascadeSpec:
    stage1_family: str = _help("cheap first stage, run on every hop: e2e (TC-ResNet) | transfer", "e2e")
    stage1_encoder: str = _help("encoder of a transfer first stage (speech-embedding is the cheap one)",
                                "speech-embedding")  # fmt: skip
    stage1_head: dict[str, Any] = _help("architecture settings of the first stage's family", factory=dict)
    stage1_window_seconds: float | None = _help(
        "the first stage reads the last this-many seconds of each window (None: the whole window)", None
    )
    stage2_family: str = _help("accurate second stage, run only where the gate opens: transfer | e2e", "transfer")
    stage2_model: str | None = _help(
        "folder of a trained detector to use as stage 2 as it is (thresholds too): its training is skipped", None
    )
    max_stream_clips: int | None = _help(
        "stream the hops of at most this many training positives for distillation (None: all of them)", None
    )
    gate_recall: float = _help("share of the validation hops where stage 2 fires that the gate must pass", 0.995)
    gate_slack: float = _help("logits the calibrated gate is lowered by, for audio the validation lacked", 1.0)
    unseen_margin: float = _help("a hop stage 2 did not score gets at most threshold - unseen_margin", 1.0)
    distill_weight: float = _help("share of stage 1's loss from stage 2's scores (the rest: the labels)", 0.7)
    temperature: float = _help("distillation temperature on the logit scale", 2.0)
    distill_audio: tuple[str, ...] = _help(
        "files or folders of unlabelled audio (speech, noise) that stage 2 labels for stage 1", ()
    )
    max_distill_windows: int = _help("unlabelled windows cut from distill_audio and negative audio, at most", 4000)
    longform_share: float = _help(
        "with no distill_audio: share (at most 0.5) of the synthetic long-form calibration segments distilled, "
        "unlabelled, instead of calibrating the gate, so stage 1 hears running speech",
        0.5,
    )
    quiet_share: float = _help(
        "share of the known-negative windows distilled again 20-60 dB quieter, with 1% digital silence", 0.25
    )
    noise_windows: int = _help("windows of made noise (white to brown, -60 to -10 dBFS) distilled as negatives", 500)
    stream_hops_per_clip: int = _help(
        "streaming hops of each training clip distilled besides those near stage 2's threshold", 4
    )


@dataclass(frozen=True)
class ModelSpec:
    family: str = _help("transfer | e2e | phoneme | cascade (then encoder, trainable, head: stage 2's)", REQUIRED)
    encoder: str = _help(
        "pretrained encoder for `transfer`: whisper-tiny.en, speech-embedding, a folder or HF id", "whisper-tiny.en"
    )
    revision: str | None = _help("Hugging Face revision of the encoder", None)
    trainable: str = _help("transfer freeze strategy: head (little data) | top-k | full (much data)", "head")
    top_k: int = _help("encoder layers trained when trainable is top-k", 2)
    head: dict[str, Any] = _help("family-specific architecture settings", factory=dict)
    window_seconds: float = _help("detector window", WINDOW_SECONDS)
    hop_seconds: float = _help("streaming score interval", HOP_SECONDS)
    cascade: CascadeSpec = _help("the two stages of family cascade (ignored by other families)", factory=CascadeSpec)


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = _help("passes over the training windows", 30)
    batch_size: int = _help("windows per step", 64)
    lr: float = _help("AdamW peak learning rate", 1e-3)
    weight_decay: float = _help("AdamW weight decay", 0.01)
    warmup_fraction: float = _help("share of steps with linear warm-up before cosine decay", 0.05)
    patience: int = _help("epochs without validation improvement before stopping", 6)
    seed: int = _help("seed for splits, augmentation, initialisation and batches", 0)
    n_views: int = _help("augmented copies of each clip per epoch (cached once when the encoder is frozen)", 2)
    recorded_views: int | None = _help(
        "augmented copies of each of your recordings per epoch (None: n_views); more copies give a few"
        " recordings more weight among hundreds of synthetic clips, each copy in other noise and rooms",
        None,
    )
    augment: dict[str, Any] = _help("augmentation settings (see wakeword.data.augment.AugmentSettings)", factory=dict)
    max_steps: int | None = _help("stop after this many optimizer steps (smoke tests)", None)
    feature_cache: bool = _help(
        "keep encoded training sets of a frozen encoder on disk (user cache), so retraining is seconds", True
    )

    def __post_init__(self) -> None:
        for name in ("n_views", "recorded_views"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise RecipeError(f"train.{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class EvalSpec:
    target_fa_per_hour: float = _help("the threshold is calibrated to this many false accepts per hour", 1.0)
    refractory_seconds: float = _help("after a detection, no new one for this long", 1.0)
    calibration_minutes: float = _help(
        "synthetic long-form speech in noise added to the calibration negatives (made and encoded once per "
        "machine); thresholds set on a few minutes promise nothing about false accepts per hour",
        30.0,
    )


@dataclass(frozen=True)
class Recipe:
    name: str = _help("recipe name, recorded in the model config", REQUIRED)
    wake_words: tuple[str, ...] = _help("the wake word(s); several share one network", REQUIRED)
    model: ModelSpec = _help("which family and architecture", factory=ModelSpec)
    data: DataSpec = _help("where the clips come from", factory=DataSpec)
    train: TrainSpec = _help("optimisation", factory=TrainSpec)
    evaluate: EvalSpec = _help("calibration and evaluation", factory=EvalSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _dataclass_of(annotation: Any) -> type | None:
    if dataclasses.is_dataclass(annotation):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next((a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)), None)
    return None


def build_dataclass(cls: type, data: Any, where: str = "") -> Any:
    """Build a (nested) frozen dataclass from plain data; unknown or missing keys raise RecipeError."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RecipeError(f"unknown key {where}{unknown[0]!r} (known: {', '.join(sorted(names))})")
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{where}{f.name}"
        if f.name in data:
            value = data[f.name]
            sub = _dataclass_of(hints[f.name])
            if sub is not None and value is not None:
                value = build_dataclass(sub, value, f"{key}.")
            elif isinstance(value, list):
                value = tuple(value)
            values[f.name] = _checked_number(hints[f.name], value, key)
        elif f.default is REQUIRED:
            raise RecipeError(f"missing required key {key!r}: {f.metadata.get('help', '')}")
    built = cls(**values)
    for f in dataclasses.fields(cls):
        if getattr(built, f.name) is REQUIRED:
            raise RecipeError(f"missing required key {where}{f.name!r}: {f.metadata.get('help', '')}")
    return built


def _checked_number(annotation: Any, value: Any, key: str) -> Any:
    """A number where the schema wants one (YAML reads `1e9` as a string: it wants `1.0e+9`)."""
    wants = {float: (int, float), int: (int,)}.get(annotation) or {"float": (int, float), "int": (int,)}.get(annotation)
    if wants is None or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, wants):
        raise RecipeError(f"{key}: expected a number, got {value!r}")
    return float(value) if float in wants else value


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """`["train.lr=0.01", "wake_words=[a, b]"]` -> a new dict with those values (parsed as YAML)."""
    data = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RecipeError(f"--set {item!r}: expected key=value")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {item!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_recipe(path: str | Path, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply `--set` overrides, validate. Errors name the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RecipeError(f"{path}: cannot read recipe ({error})") from None
    try:
        recipe = build_dataclass(Recipe, apply_overrides(data, overrides))
    except (RecipeError, TypeError) as error:
        raise RecipeError(f"{path}: {error}") from None
    if isinstance(recipe.wake_words, str):
        recipe = dataclasses.replace(recipe, wake_words=(recipe.wake_words,))
    return recipe
