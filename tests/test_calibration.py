"""Calibration sets: synthetic near misses are reported, not counted as hours of audio (hand-computed)."""

from pathlib import Path

import numpy as np

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
