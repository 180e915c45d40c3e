"""Hard-negative mining and the retrain / rollback loop (wakeword.mining), on TTS speech."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wakeword.checkpoint import load_detector, save_detector
from wakeword.cli import main
from wakeword.data.clips import DataSet
from wakeword.mining import AudioRing, MineSettings, activation_span, mine, retrain, rollback
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig
from wakeword.pipeline import feature_cache_dir, train_recipe
from wakeword.recipes import load_recipe
from wakeword.stream import Detection, score_array

RECIPES = Path(__file__).parents[1] / "recipes"


def test_audio_ring_cuts_by_stream_time_by_hand():
    ring = AudioRing(seconds=1.0)  # 16000 samples kept
    ring.push(np.arange(24000, dtype=np.float32))  # 1.5 s: samples 8000..23999 are kept
    start, audio = ring.cut(0.25, 0.75)  # asks for 4000..12000; 4000..7999 are gone
    assert start == 0.5 and audio[0] == 8000 and audio[-1] == 11999
    start, audio = ring.cut(1.4, 2.0)  # 22400..32000; only up to 23999 exists
    assert start == 1.4 and len(audio) == 1600


def test_activation_span_covers_the_firing_windows_by_hand():
    # first firing window ends at 3.0 s; the last one started at 2.2 s, so it ends at 3.7 s (1.5 s windows)
    event = Detection("w", 0.9, time_seconds=3.0, start_seconds=2.2, end_seconds=3.0)
    assert activation_span(event, 1.5) == (1.25, 3.95)  # 0.25 s margins
    long = Detection("w", 0.9, time_seconds=3.0, start_seconds=20.0, end_seconds=3.0)
    assert activation_span(long, 1.5) == (1.25, 5.25)  # cut to MAX_CLIP_SECONDS


@pytest.fixture(scope="module")
def phoneme_model(tmp_path_factory):
    config = DetectorConfig(family="phoneme", wake_words=("hey computer",))
    return save_detector(get_family("phoneme").build_model(config), tmp_path_factory.mktemp("m") / "model")


def _planted_stream(tts) -> tuple[np.ndarray, float, float]:
    """Running speech with the wake word planted (a "false trigger" in audio labelled negative):
    audio, and where the planted word starts and ends (seconds)."""
    silence = np.zeros(16000, np.float32)
    word = tts("hey computer")
    parts = [silence, tts("good morning everyone"), silence, tts("please play some music"), silence]
    start = sum(len(p) for p in parts) / 16000
    audio = np.concatenate([*parts, word, silence]).astype(np.float32)
    return audio, start, start + len(word) / 16000


def test_mining_finds_the_planted_trigger_once_and_nothing_in_silence(phoneme_model, tmp_path, tts, capsys):
    audio, word_start, word_end = _planted_stream(tts)
    sf.write(tmp_path / "talk.wav", audio, 16000)
    scores = score_array(load_detector(phoneme_model), audio)[1][:, 0]
    before = scores[: int(word_start * 10)].max()
    threshold = float((before + scores.max()) / 2)  # above all the other speech, below the planted word
    code = main(["mine", str(phoneme_model), str(tmp_path / "talk.wav"), "--out", str(tmp_path / "mined")])
    assert code == 0 and "activation" in capsys.readouterr().out  # default: half the model's threshold

    report = mine(phoneme_model, [tmp_path], tmp_path / "hard", MineSettings(threshold=threshold))
    assert report.n_activations == 1 and report.n_added == 1 and report.n_files == 1
    assert abs(report.hours - len(audio) / 16000 / 3600) < 1e-6
    clip = DataSet(tmp_path / "hard").clips()[0]
    assert clip.labels == {"hey computer": 0} and clip.source == "mined"
    assert clip.meta["source_file"] == str((tmp_path / "talk.wav").resolve())
    assert clip.meta["start_seconds"] < word_end and clip.meta["end_seconds"] > word_start  # it holds the word
    saved = DataSet(tmp_path / "hard").load(clip)
    at = round(clip.meta["start_seconds"] * 16000)
    np.testing.assert_allclose(saved, audio[at : at + len(saved)], atol=1e-4)  # the stream's own samples

    again = mine(phoneme_model, [tmp_path / "talk.wav"], tmp_path / "hard", MineSettings(threshold=threshold))
    assert again.n_activations == 1 and again.n_added == 0 and again.n_duplicates == 1  # de-duplicated
    assert len(DataSet(tmp_path / "hard")) == 1

    quiet = np.random.default_rng(0).normal(0, 1e-3, 16000 * 20).astype(np.float32)
    sf.write(tmp_path / "silence.wav", quiet, 16000)
    silent = mine(phoneme_model, [tmp_path / "silence.wav"], tmp_path / "none", MineSettings(threshold=threshold))
    assert silent.n_activations == 0 and len(DataSet(tmp_path / "none")) == 0


def test_mining_skips_an_unreadable_file_and_names_it(phoneme_model, tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF....WAVEfmt ")
    sf.write(tmp_path / "audio" / "ok.wav", np.zeros(32000, np.float32), 16000)
    report = mine(phoneme_model, [tmp_path / "audio"], tmp_path / "hard")
    assert report.n_files == 1 and len(report.skipped) == 1 and "broken.wav" in report.skipped[0]
    with pytest.raises(FileNotFoundError, match="no audio files"):
        mine(phoneme_model, [tmp_path / "hard" / "audio"], tmp_path / "x")


def _tiny_transfer(tmp_path: Path, whisper_dir: Path) -> Path:
    recipe = load_recipe(
        RECIPES / "quickstart.yaml",
        [
            f"data.synth.out={tmp_path / 'synth'}",
            "data.synth.n_positives=6",
            "data.synth.n_confusables=3",
            "data.synth.n_generic=3",
            "data.synth.qc=false",
            f"model.encoder={whisper_dir}",
            "train.epochs=2",
            "train.n_views=1",
            "train.batch_size=8",
            "evaluate.calibration_minutes=0",
        ],
    )
    train_recipe(recipe, tmp_path / "model")
    return tmp_path / "model"


def test_retrain_with_corrections_encodes_only_them_and_rollback_restores_exactly(
    tmp_path, tiny_whisper_dir, tts, monkeypatch
):
    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    model = _tiny_transfer(tmp_path, tiny_whisper_dir)
    cached = sorted(feature_cache_dir().glob("*.safetensors"))
    assert len(cached) == 2  # the training split and the validation split, encoded once
    original = {n: (model / n).read_bytes() for n in ("config.json", "model.safetensors")}

    corrections = DataSet.create(tmp_path / "corrections")  # what "wrong" / "right" in the app write
    corrections.add_audio(tts("hey commuter"), {"hey computer": 0}, "corrected")
    corrections.add_audio(tts("hey computer", accent="en-GB-x-rp"), {"hey computer": 1}, "corrected")
    report = retrain(model, [tmp_path / "corrections"])
    assert report.counts["hard_negatives"] == 2
    assert len(sorted(feature_cache_dir().glob("*.safetensors"))) == 3  # only the corrections were encoded
    assert (model / "model.safetensors").read_bytes() != original["model.safetensors"]
    retrained = load_detector(model)
    assert retrained.config.thresholds == load_detector(model / "previous").config.thresholds  # kept
    recipe = retrained.config.training["recipe"]
    assert recipe["data"]["hard_negatives"] == [str((tmp_path / "corrections").resolve())]

    rollback(model)
    assert {n: (model / n).read_bytes() for n in original} == original  # byte for byte
    assert not (model / "previous").exists()
    assert main(["rollback", str(model)]) == 2  # nothing left to roll back: a clear error, not a traceback
