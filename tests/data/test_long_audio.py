"""Cached long-audio data sets: built once, and an interrupted build is never taken for a finished one."""

import numpy as np
import pytest
import soundfile as sf

from wakeword.audio import SAMPLE_RATE
from wakeword.data import long_audio
from wakeword.data.long_audio import COMPLETE_MARKER, segment_long_audio


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _room(path, seconds: float):
    rng = np.random.default_rng(0)
    sf.write(path, (0.05 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32), SAMPLE_RATE)
    return path


def test_interrupted_segmentation_is_rebuilt_not_reused(cache, tmp_path, monkeypatch):
    room = _room(tmp_path / "room.wav", 100.0)
    calls = []
    original = long_audio._cut_segments

    def cut_then_die(files, dataset):
        original(files, dataset)
        calls.append(len(dataset.clips()))
        raise KeyboardInterrupt  # the user stopped training while the segments were being written

    monkeypatch.setattr(long_audio, "_cut_segments", cut_then_die)
    with pytest.raises(KeyboardInterrupt):
        segment_long_audio([room])
    assert calls == [4]
    assert not list((cache / "negative-audio").glob("[!.]*"))  # nothing that looks finished

    monkeypatch.setattr(long_audio, "_cut_segments", original)
    dataset = segment_long_audio([room])
    assert len(dataset.clips()) == 4 and (dataset.root / COMPLETE_MARKER).is_file()
    assert not list((cache / "negative-audio").glob(".*building"))  # staging renamed into place
    assert segment_long_audio([room]).root == dataset.root  # and reused from then on
