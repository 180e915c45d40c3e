"""Calibration sets: synthetic near misses are reported, not counted as hours of audio (hand-computed)."""

from pathlib import Path

import numpy as np
import pytest

from wakeword.calibration import is_near_miss, near_miss_record, split_near_misses
from wakeword.data.clips import Clip
from wakeword.evaluate import Scored, calibrate
from wakeword.models.base import DetectorConfig

WORD = "jarvis"


def _pair(i: int, label: int, kind: str, source: str = "synth") -> tuple[Clip, Path]:
    clip = Clip(f"c{i}", f"audio/{i}.wav", {WORD: label}, source, meta={"kind": kind})
    return clip, Path(".")


def _scored(label: int, peak: float, n_hops: int = 20) -> Scored:
    track = np.full((n_hops, 1), -8.0)
    track[n_hops // 2, 0] = peak
    return Scored({WORD: label}, duration_seconds=2.0, track=track)


def test_near_misses_do_not_set_the_threshold_and_are_counted():
    pairs = [_pair(0, 1, "positive"), _pair(1, 0, "near"), _pair(2, 0, "partial"), _pair(3, 0, "generic"),
             _pair(4, 0, "near", source="recorded")]  # fmt: skip
    scored = [_scored(1, 9.0), _scored(0, 6.0), _scored(0, 2.0), _scored(0, 1.0), _scored(0, 0.5)]
    assert [is_near_miss(c) for c, _ in pairs] == [False, True, True, False, False]  # a user's clip never is

    kept, near = split_near_misses(pairs, scored)
    assert [s.track.max() for s in kept] == [9.0, 1.0, 0.5] and [s.track.max() for s in near] == [6.0, 2.0]

    config = DetectorConfig(family="e2e", wake_words=[WORD])
    # 0 FA/h allowed: just above the highest kept negative (1.0), not above the near miss at 6.0
    threshold = calibrate(config, kept, 0.0, 1.0)[WORD]
    assert threshold == np.nextafter(1.0, np.inf)
    assert near_miss_record(config, near, {WORD: threshold}) == {WORD: {"n_near_misses": 2, "accepted": 2}}
    assert near_miss_record(config, near, {WORD: 3.0}) == {WORD: {"n_near_misses": 2, "accepted": 1}}


def test_near_misses_stay_when_they_are_the_only_negatives():
    pairs = [_pair(0, 1, "positive"), _pair(1, 0, "near")]
    scored = [_scored(1, 9.0), _scored(0, 6.0)]
    kept, near = split_near_misses(pairs, scored)
    assert kept == scored and near == []


# -- long calibration audio: an int8 first pass, float32 where it matters -----------------------------------------


def _long_audio_model(tts, tiny_whisper_dir, tmp_path, monkeypatch):
    import soundfile as sf
    import torch

    from wakeword.audio import SAMPLE_RATE
    from wakeword.data.clips import DataSet
    from wakeword.models import get_family

    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("WAKEWORD_ENCODER_BACKEND", raising=False)
    config = DetectorConfig("transfer", (WORD,), encoder={"name": str(tiny_whisper_dir), "trainable": "head"},
                            head={"hidden": [16]})  # fmt: skip
    torch.manual_seed(0)
    model = get_family("transfer").build_model(config).eval()
    data = DataSet.create(tmp_path / "long")
    texts = ["the weather is nice today", "please open the window", "she bought three apples"]
    for i, text in enumerate(texts):
        audio = np.concatenate([tts(text, variant=v) for v in ("", "m3", "f2")] + [np.zeros(SAMPLE_RATE // 2)])
        path = tmp_path / f"{i}.wav"
        sf.write(path, audio.astype(np.float32), SAMPLE_RATE)
        data.add_clips([data.make_clip(audio.astype(np.float32), {WORD: 0}, "corpus", clip_id=f"long{i}")])
    return model, [(clip, data.root) for clip in data.clips()]


def test_int8_first_pass_gives_the_float32_thresholds(tts, tiny_whisper_dir, tmp_path, monkeypatch, capsys):
    """Thresholds and the tracks above them equal a float32 pass; hops far below were never re-scored."""
    from wakeword import calibration

    model, pairs = _long_audio_model(tts, tiny_whisper_dir, tmp_path, monkeypatch)
    exact = calibration.score_long(model, pairs)
    values = np.concatenate([s.track[:, 0] for s in exact])
    # the tiny random head's logits span a fraction of a logit: the margin is scaled to that span
    monkeypatch.setattr(calibration, "REFINE_MARGIN_LOGITS", float(np.ptp(values)) / 3)
    monkeypatch.setattr(calibration, "INT8_ERROR_ALLOWANCE", 0.0)
    for target in (0.0, 200.0):  # nothing may fire; a few activations may
        expected = calibrate(model.config, exact, target, 1.0)[WORD]
        thresholds, long = calibration.calibrate_on_long_audio(model, [], pairs, target, 1.0)
        assert thresholds[WORD] == pytest.approx(expected, abs=1e-6)
        got = np.concatenate([s.track[:, 0] for s in long])
        high = values >= expected - 1e-3
        np.testing.assert_allclose(got[high], values[high], atol=1e-6)
        assert np.abs(got - values).max() > 1e-5  # the int8 pass scored the rest (int8 error: 2.6% of the span)
    assert "not conclusive" not in capsys.readouterr().out
    assert list((tmp_path / "cache" / "onnx-encoders").glob("*-int8-*.onnx"))


def test_long_tracks_are_float32_wherever_a_fixed_threshold_can_fire(
    tts, tiny_whisper_dir, tmp_path, monkeypatch, capsys
):
    """A cascade's gate asks where stage 2 reaches its (fixed) threshold: int8 first, float32 from the floor up,
    so the firing hops are exactly a float32 pass's; a tiny margin falls back to float32 everywhere."""
    from wakeword import calibration

    model, pairs = _long_audio_model(tts, tiny_whisper_dir, tmp_path, monkeypatch)
    values = np.concatenate([s.track[:, 0] for s in calibration.score_long(model, pairs)])
    margin = float(np.ptp(values)) / 3  # the tiny random head's logits span a fraction of a logit
    monkeypatch.setattr(calibration, "REFINE_MARGIN_LOGITS", margin)
    monkeypatch.setattr(calibration, "INT8_ERROR_ALLOWANCE", 0.0)
    threshold = float(np.quantile(values, 0.9))
    got = np.concatenate(
        [s.track[:, 0] for s in calibration.score_long_above(model, pairs, np.array([threshold - margin]))]
    )
    np.testing.assert_array_equal(got >= threshold, values >= threshold)
    above = got >= threshold - margin
    np.testing.assert_allclose(got[above], values[above], atol=1e-6)
    assert np.abs(got - values).max() > 1e-5  # the hops far below stayed int8
    assert "not conclusive" not in capsys.readouterr().out
    monkeypatch.setattr(calibration, "REFINE_MARGIN_LOGITS", 1e-6)
    again = calibration.score_long_above(model, pairs, np.array([threshold - 1e-6]))
    assert "not conclusive" in capsys.readouterr().out
    np.testing.assert_array_equal(np.concatenate([s.track[:, 0] for s in again]), values)


def test_inconclusive_int8_pass_is_redone_in_float32(tts, tiny_whisper_dir, tmp_path, monkeypatch, capsys):
    from wakeword import calibration

    model, pairs = _long_audio_model(tts, tiny_whisper_dir, tmp_path, monkeypatch)
    monkeypatch.setattr(calibration, "REFINE_MARGIN_LOGITS", 1e-6)  # smaller than any int8 error
    thresholds, long = calibration.calibrate_on_long_audio(model, [], pairs, 0.0, 1.0)
    assert "int8 first pass not conclusive" in capsys.readouterr().out
    exact = calibration.score_long(model, pairs)
    assert thresholds == calibrate(model.config, exact, 0.0, 1.0)
    assert all(np.array_equal(a.track, b.track) for a, b in zip(long, exact, strict=True))


def test_refined_hops_are_encoded_once(tts, tiny_whisper_dir, tmp_path, monkeypatch):
    """A second calibration on the same long audio (a retrained head) finds the float32 frames of the hops it
    re-scores in the hops cache: nothing is encoded again, and the scores are the same."""
    from wakeword import calibration
    from wakeword.data import long_audio

    model, pairs = _long_audio_model(tts, tiny_whisper_dir, tmp_path, monkeypatch)
    values = np.concatenate([s.track[:, 0] for s in calibration.score_long(model, pairs, int8=True)])
    monkeypatch.setattr(calibration, "REFINE_MARGIN_LOGITS", float(np.ptp(values)) / 3)
    monkeypatch.setattr(calibration, "INT8_ERROR_ALLOWANCE", 0.0)
    first = calibration.calibrate_on_long_audio(model, [], pairs, 0.0, 1.0)
    assert list((tmp_path / "cache" / "frames").glob("*.hops.npz"))
    encoded = []
    real_encode = long_audio.encode_windows
    monkeypatch.setattr(long_audio, "encode_windows", lambda *a, **k: encoded.append(1) or real_encode(*a, **k))
    again = calibration.calibrate_on_long_audio(model, [], pairs, 0.0, 1.0)
    assert encoded == [] and again[0] == first[0]
    assert all(np.array_equal(a.track, b.track) for a, b in zip(first[1], again[1], strict=True))
