"""Every shipped recipe runs end to end on tiny settings, so no recipe rots (issue: recipes are data)."""

from pathlib import Path

import numpy as np
import pytest

from wakeword.checkpoint import load_detector
from wakeword.compare import load_compare
from wakeword.pipeline import train_recipe
from wakeword.recipes import load_recipe

RECIPES = sorted(p for p in (Path(__file__).parents[1] / "recipes").glob("*.yaml") if p.name != "compare.yaml")


def tiny_overrides(recipe_path: Path, tmp_path: Path, whisper_dir: Path) -> list[str]:
    overrides = [
        f"data.synth.out={tmp_path / 'synth'}",
        "data.synth.n_positives=4",
        "data.synth.n_confusables=2",
        "data.synth.n_generic=2",
        "data.synth.qc=false",
        "train.max_steps=2",
        "train.epochs=1",
        "train.n_views=1",
        "train.batch_size=4",
        "evaluate.calibration_minutes=0",  # 30 min of long form: a benchmark's cost, not a smoke test's
    ]
    if load_recipe(recipe_path).model.encoder.startswith("whisper"):
        overrides.append(f"model.encoder={whisper_dir}")  # a tiny local Whisper stands in for tiny.en
    return overrides


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_two_steps_and_loads(recipe_path, tmp_path, tiny_whisper_dir):
    recipe = load_recipe(recipe_path, tiny_overrides(recipe_path, tmp_path, tiny_whisper_dir))
    report = train_recipe(recipe, tmp_path / "model")
    detector = load_detector(tmp_path / "model")
    assert detector.config.family == recipe.model.family
    assert set(report.words) == set(detector.config.wake_words) == set(recipe.wake_words)
    assert all(np.isfinite(t) for t in detector.config.thresholds.values())  # logits: any finite number


def test_compare_recipe_is_valid():
    spec = load_compare(Path(__file__).parents[1] / "recipes" / "compare.yaml")
    assert {c.label for c in spec.contenders} >= {"transfer-head", "e2e", "phoneme"}
    for contender in spec.contenders:
        load_recipe(Path(__file__).parents[1] / contender.recipe)
