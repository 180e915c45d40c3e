import pytest

from wakeword.recipes import Recipe, RecipeError, apply_overrides, load_recipe

MINIMAL = """
name: t
wake_words: [hey computer]
model:
  family: transfer
"""


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_minimal_recipe_has_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert isinstance(recipe, Recipe)
    assert recipe.wake_words == ("hey computer",)
    assert recipe.model.encoder == "whisper-tiny.en" and recipe.model.trainable == "head"
    assert recipe.data.synth is None and recipe.train.epochs == 30


def test_unknown_key_named_with_its_section(tmp_path):
    with pytest.raises(RecipeError, match=r"r\.yaml: unknown key train\.'learning_rate'"):
        load_recipe(write(tmp_path, MINIMAL + "train:\n  learning_rate: 0.1\n"))


def test_required_key_fails_loudly(tmp_path):
    with pytest.raises(RecipeError, match=r"missing required key 'model.family'"):
        load_recipe(write(tmp_path, "name: t\nwake_words: [a]\nmodel: {encoder: x}\n"))
    with pytest.raises(RecipeError, match=r"data.synth.out"):
        load_recipe(write(tmp_path, MINIMAL + "data:\n  synth: {n_positives: 3}\n"))


def test_overrides_parse_yaml_values(tmp_path):
    recipe = load_recipe(
        write(tmp_path, MINIMAL), ["train.lr=0.01", "wake_words=[a, b]", "data.synth.out=/tmp/s", "model.head={}"]
    )
    assert recipe.train.lr == 0.01 and recipe.wake_words == ("a", "b")
    assert recipe.data.synth.out == "/tmp/s" and recipe.data.synth.n_positives == 300


def test_bad_override_and_frozen():
    with pytest.raises(RecipeError, match="expected key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(RecipeError, match="not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_recipes_are_frozen(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        recipe.train.lr = 1.0


def test_a_number_written_as_text_is_refused_by_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nwake_words: [w]\nmodel: {family: e2e}\ndata: {mining_threshold: -1e9}\n")
    with pytest.raises(RecipeError, match=r"data.mining_threshold: expected a number, got '-1e9'"):
        load_recipe(path)
    path.write_text("name: r\nwake_words: [w]\nmodel: {family: e2e}\ntrain: {epochs: 2.5}\n")
    with pytest.raises(RecipeError, match=r"train\.epochs: expected a number"):
        load_recipe(path)
