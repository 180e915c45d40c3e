"""The synthetic long-form calibration corpus: full segments, listed sentences, the same audio for a seed."""

import numpy as np

from wakeword.audio import SAMPLE_RATE, load_audio
from wakeword.data import long_audio
from wakeword.data.long_audio import SEGMENT_SECONDS, build_synthetic_longform, says_any


def _build(tmp_path, monkeypatch, name: str, seed: int = 0, minutes: float = 1.0):
    monkeypatch.setenv("WAKEWORD_CACHE_DIR", str(tmp_path / name))
    data = build_synthetic_longform(minutes, seed)
    return data, [load_audio(data.root / clip.path) for clip in data.clips()]


def test_longform_segments_are_full_and_depend_on_the_seed_alone(tmp_path, monkeypatch):
    data, audio = _build(tmp_path, monkeypatch, "first")
    assert len(audio) == 2 and all(len(a) == SEGMENT_SECONDS * SAMPLE_RATE for a in audio)
    clips = data.clips()
    assert all(c.meta["part"] == "calibration" and c.source == "synth" for c in clips)
    assert all(len(c.text.split(" | ")) >= 3 for c in clips)  # 30 s holds several sentences
    assert all(np.sqrt(np.mean(a**2)) > 1e-3 for a in audio)
    first = clips[0].text.split(" | ")[0].split()[0]  # calibration leaves out segments that say the word
    assert says_any(clips[0], [first]) and not says_any(clips[0], ["jarvis"])

    _, again = _build(tmp_path, monkeypatch, "again")  # a fresh cache: rendered again, by new processes
    assert all(np.array_equal(a, b) for a, b in zip(audio, again, strict=True))
    _, other = _build(tmp_path, monkeypatch, "other", seed=1, minutes=0.5)
    assert not np.array_equal(audio[0], other[0])


def test_short_segments_draw_more_sentences(tmp_path, monkeypatch):
    monkeypatch.setattr(long_audio, "SENTENCES_PER_DRAW", 2)  # ~7 s a draw: several rounds per segment
    data, audio = _build(tmp_path, monkeypatch, "rounds", minutes=0.5)
    assert all(len(a) == SEGMENT_SECONDS * SAMPLE_RATE for a in audio)
    assert all(len(c.text.split(" | ")) > 2 for c in data.clips())
