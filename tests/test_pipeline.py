"""The split rule for the user's own recordings: few speakers means every clip trains the model."""

import numpy as np
import pytest
import soundfile as sf
import torch

from wakeword.audio import SAMPLE_RATE
from wakeword.data.clips import Clip, DataSet
from wakeword.pipeline import split_clips
from wakeword.recipes import Recipe, build_dataclass

WORD = "hey computer"


def _clip(i: int, source: str, speaker: str, positive: int = 1) -> tuple[Clip, str]:
    return Clip(id=f"{source}{i}", path=f"audio/{i}.wav", labels={WORD: positive}, source=source,
                speaker=speaker, duration_seconds=1.0), "/data"  # fmt: skip


def _recipe(**data) -> Recipe:
    return build_dataclass(Recipe, {"name": "t", "wake_words": [WORD], "model": {"family": "e2e"}, "data": data})


def synthetic(n: int = 60) -> list[tuple[Clip, str]]:
    return [_clip(i, "synth", f"voice{i % 20}", positive=i % 2) for i in range(n)]


@pytest.mark.parametrize("n_speakers", [1, 3, 5])
def test_few_speakers_all_real_clips_train(n_speakers):
    real = [_clip(i, "recorded", f"person{i % n_speakers}") for i in range(10)]
    splits = split_clips(synthetic() + real, _recipe())
    trained = [c for c, _ in splits.train if c.source == "recorded"]
    assert len(trained) == 10 and not any(c.source == "recorded" for c, _ in splits.val + splits.test)
    assert splits.val and splits.test  # synthetic voices still validate and test
    assert f"10 real recording(s) from {n_speakers} speaker(s): all 10 train the model" in splits.real_rule
    assert splits.counts()["train"]["real_positive"] == 10 and splits.counts()["real_rule"] == splits.real_rule


def test_unnamed_speakers_count_as_one_and_many_speakers_are_split():
    unnamed = [_clip(i, "recorded", "") for i in range(10)]  # not ten speakers: one unknown person
    assert "from 1 speaker(s): all 10 train" in split_clips(synthetic() + unnamed, _recipe()).real_rule
    many = [_clip(i, "corpus", f"person{i % 12}") for i in range(48)]
    splits = split_clips(synthetic() + many, _recipe())
    held_out = {c.speaker for c, _ in splits.val + splits.test if c.source == "corpus"}
    assert held_out and not held_out & {c.speaker for c, _ in splits.train if c.source == "corpus"}
    assert "split by speaker" in splits.real_rule
    lowered = split_clips(synthetic() + unnamed[:4] + many[:8], _recipe(hold_out_real_min_speakers=100))
    assert "all 12 train" in lowered.real_rule


# -- long negative audio: training windows, mining rounds, calibration --------------------------------------------


def _sentences(tts, n: int) -> np.ndarray:
    texts = ["the weather is nice today", "please open the window", "she bought three apples", "we met at noon"]
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    return np.concatenate([part for i in range(n) for part in (tts(texts[i % 4], speed=0.9 + 0.05 * (i % 5)), gap)])


def test_negative_audio_is_trained_on_mined_and_calibrated_on(tmp_path, tts, tiny_whisper_dir, monkeypatch, capsys):
    import dataclasses

    from wakeword.checkpoint import load_detector
    from wakeword.data.long_audio import segment_long_audio
    from wakeword.pipeline import train_recipe
    from wakeword.recipes import load_recipe

    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))  # frames and long form made here
    data = DataSet.create(tmp_path / "data")
    for i, variant in enumerate(["", "m1", "f2", "m3", "f4", "m5"]):
        data.add_audio(tts(WORD, variant=variant), {WORD: 1}, source="synth", speaker=f"v{i}")
        data.add_audio(tts("hey commuter", variant=variant), {WORD: 0}, source="synth", speaker=f"v{i}")
    room = tmp_path / "room"
    room.mkdir()
    sf.write(room / "talk.wav", _sentences(tts, 60)[: 100 * SAMPLE_RATE], SAMPLE_RATE)
    segments = segment_long_audio([room]).clips()  # 30, 30, 30 and 10 s; every 4th calibrates
    assert [c.meta["part"] for c in segments] == ["train", "train", "train", "calibration"]
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        f"name: t\nwake_words: [{WORD}]\n"
        f"model: {{family: transfer, encoder: {tiny_whisper_dir}, head: {{hidden: [16]}}}}\n"
        f"data: {{train: [{data.root}], synth: null, negative_audio: [{room}], mining_rounds: 1,\n"
        "  mining_threshold: -1.0e+9, max_mined_per_round: 5, val_fraction: 0.3, test_fraction: 0.3}\n"
        "train: {epochs: 2, batch_size: 8, n_views: 1, feature_cache: false}\n"
        "evaluate: {calibration_minutes: 0.5}\n"
    )
    report = train_recipe(load_recipe(recipe_file), tmp_path / "model")
    out = capsys.readouterr().out
    # every hop passes -1e9: one sustained activation per training segment, each one near miss (not 300 hops)
    assert "mining round 1: 3 near miss(es) in the negative audio" in out
    assert report.counts["negative_audio_segments"] == 3
    calibration = load_detector(tmp_path / "model").config.calibration["words"][WORD]
    # the long audio's 10 s calibration segment + 30 s of long form + a few validation clips
    assert 40 / 3600 < calibration["negative_hours"] < 60 / 3600
    assert "calibrated on only" in calibration["warning"] and "WARNING" in out
    # the synthetic near misses of the validation split are counted, not calibrated on (tests/test_calibration.py)
    assert 0 <= calibration["accepted"] <= calibration["n_near_misses"]
    assert f"of {calibration['n_near_misses']} synthetic near misses" in out
    assert set(calibration["test_near_misses"]) == {"n_near_misses", "accepted"}  # the test split's, reported apart
    assert report.calibration["words"][WORD] == calibration
    assert dataclasses.asdict(report.words[WORD])["fa_per_hour_high"] > 0  # every FA/h has its interval


def test_cached_frames_score_like_the_streaming_detector(tmp_path, tts, tiny_whisper_dir, monkeypatch):
    from wakeword.data.long_audio import score_long_clip, stream_windows
    from wakeword.models import get_family
    from wakeword.models.base import DetectorConfig
    from wakeword.stream import score_array

    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    audio = _sentences(tts, 3)
    audio = audio[: len(audio) - 123]  # a last partial hop
    path = tmp_path / "talk.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    config = DetectorConfig("transfer", (WORD,), encoder={"name": str(tiny_whisper_dir), "trainable": "head"},
                            head={"hidden": [16]})  # fmt: skip
    model = get_family("transfer").build_model(config).eval()
    expected = score_array(model, audio)[1]
    assert len(stream_windows(audio, config.window_samples, config.hop_samples)) == len(expected)
    first = score_long_clip(model, path)
    again = score_long_clip(model, path)  # from the disk cache now
    assert list((tmp_path / "cache" / "frames").glob("*.npy"))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, expected, atol=2e-2)  # frames are cached as float16


def test_silent_windows_of_a_padded_clip_are_encoded_once(tmp_path, tts, tiny_whisper_dir, monkeypatch):
    from wakeword.data.long_audio import encode_windows, stream_windows
    from wakeword.models import get_family
    from wakeword.models.base import DetectorConfig

    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    config = DetectorConfig("transfer", (WORD,), encoder={"name": str(tiny_whisper_dir), "trainable": "head"})
    model = get_family("transfer").build_model(config).eval()
    audio = np.pad(tts("hey computer"), (config.window_samples, 8000))  # as clip scoring pads it
    windows = stream_windows(audio, config.window_samples, config.hop_samples)
    silent = int(np.sum(~np.any(windows != 0, axis=1)))
    assert silent >= config.window_samples // config.hop_samples  # a window and more of leading silence
    encoded, encode = [], model.encode
    monkeypatch.setattr(model, "encode", lambda x: encoded.append(len(x)) or encode(x))
    frames = encode_windows(model, windows)
    assert sum(encoded) == len(windows) - silent + 1
    expected = encode(torch.from_numpy(np.array(windows))).half().numpy()
    np.testing.assert_allclose(frames.astype(np.float32), expected.astype(np.float32), atol=1e-2)


def test_clip_scores_of_a_frozen_encoder_come_from_the_frame_cache(tmp_path, tts, tiny_whisper_dir, monkeypatch):
    from wakeword.evaluate import score_items
    from wakeword.models import get_family
    from wakeword.models.base import DetectorConfig
    from wakeword.pipeline import score_pairs

    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    data = DataSet.create(tmp_path / "d")
    clips = [data.add_audio(tts(text), {WORD: label}) for text, label in ((WORD, 1), ("good morning", 0))]
    config = DetectorConfig("transfer", (WORD,), encoder={"name": str(tiny_whisper_dir), "trainable": "head"},
                            head={"hidden": [16]})  # fmt: skip
    model = get_family("transfer").build_model(config).eval()
    cached = score_pairs(model, [(c, data.root) for c in clips], "cached")
    streamed = score_items(model, [(data.root / c.path, c.labels) for c in clips])
    for a, b in zip(cached, streamed, strict=True):
        assert a.labels == b.labels and a.duration_seconds == pytest.approx(b.duration_seconds, abs=1e-3)
        np.testing.assert_allclose(a.track, b.track, atol=2e-2)  # float16 frames
    assert len(list((tmp_path / "cache" / "frames").glob("*.npy"))) == 2


def test_only_the_retraining_recipe_names_paths_and_says_so(tmp_path):
    import json

    from wakeword.pipeline import PATHS_NOTE, build_config

    config = build_config(_recipe(train=[str(tmp_path / "mine")], negative_audio=[str(tmp_path / "room")]))
    text = json.dumps({k: v for k, v in config.to_dict().items() if k != "training"})
    assert str(tmp_path) not in text
    assert config.training["paths"] == PATHS_NOTE and str(tmp_path) in json.dumps(config.training["recipe"])
