"""Fitting's training parts: which windows are the user's recordings (anchor head members skip them)."""

import pytest
import torch

from wakeword.data.clips import DataSet
from wakeword.models import get_family

WORD = "hey computer"


@pytest.mark.parametrize(  # cached frames (tuples) and audio batches (dicts); the recordings' own view count
    ("trainable", "recorded_views"), [("head", None), ("head", 3), ("full", 3)]
)
def test_windows_of_the_users_recordings_are_flagged(
    tmp_path, tts, tiny_whisper_dir, monkeypatch, trainable, recorded_views
):
    """Every epoch, compute_loss sees recorded = 1 on exactly the recorded clips' windows (train.recorded_views
    copies of each, default n_views) and 0 elsewhere."""
    from wakeword.pipeline import train_recipe
    from wakeword.recipes import load_recipe

    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    data = DataSet.create(tmp_path / "data")
    for i, variant in enumerate(["", "m1", "f2", "m3", "f4", "m5"]):
        data.add_audio(tts(WORD, variant=variant), {WORD: 1}, source="synth", speaker=f"v{i}")
        data.add_audio(tts("hey commuter", variant=variant), {WORD: 0}, source="synth", speaker=f"v{i}")
    for variant in ("f1", "m2", "f3"):  # the user's recordings: one speaker, so all of them train
        data.add_audio(tts(WORD, variant=variant, speed=0.9), {WORD: 1}, source="recorded", speaker="me")
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        f"name: t\nwake_words: [{WORD}]\n"
        f"model: {{family: transfer, encoder: {tiny_whisper_dir}, trainable: {trainable},\n"
        "  head: {hidden: [16], n_members: 2, n_anchor_members: 1}}\n"
        f"data: {{train: [{data.root}], synth: null, val_fraction: 0.3, test_fraction: 0.3}}\n"
        f"train: {{epochs: 2, batch_size: 4, n_views: 1, recorded_views: {recorded_views or 'null'},"
        " feature_cache: false}\n"
        "evaluate: {calibration_minutes: 0}\n"
    )
    family = get_family("transfer")
    real_loss, flags = family.compute_loss, []

    def recording_loss(model, batch):
        if model.training:
            flags.append(batch["recorded"].clone())
        return real_loss(model, batch)

    monkeypatch.setattr(family, "compute_loss", recording_loss)
    train_recipe(load_recipe(recipe_file), tmp_path / "model")
    seen = torch.cat(flags)
    assert set(seen.tolist()) == {0.0, 1.0}
    n_copies = recorded_views or 1  # n_views is 1
    assert seen.sum().item() == 3 * n_copies * 2  # three recorded clips, one window a copy, two epochs
