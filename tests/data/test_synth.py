"""espeak-ng voices, prosody, QC gating and a tiny build_synthetic_dataset run (real TTS throughout)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from wakeword.audio import SAMPLE_RATE
from wakeword.data.clips import DataSet
from wakeword.data.synth import (
    SynthSettings,
    build_pocketsphinx_transcriber,
    build_synthetic_dataset,
    draw_voice_settings,
    qc_alternatives,
)
from wakeword.data.tts import EspeakBackend, TTSBackend, build_backend
from wakeword.features import log_mel


def spectrum(audio: np.ndarray) -> np.ndarray:
    """Time-averaged log-mel spectrum, (80,): a voice's timbre, insensitive to small timing jitter."""
    return log_mel(torch.from_numpy(np.array(audio))[None])[0].mean(-1).numpy()


@pytest.fixture(scope="module")
def backend() -> EspeakBackend:
    return EspeakBackend()


def test_espeak_has_hundreds_of_english_voices(backend):
    voices = backend.voices()
    assert isinstance(backend, TTSBackend)
    assert len(voices) >= 500 and len({v.id for v in voices}) == len(voices)
    assert {"en-US", "en-GB-scotland", "en-029", "en"} <= set(backend.accents)
    assert {"f1", "m3", "klatt", ""} <= set(backend.variants)


def test_synthesis_is_16k_float_speech(tts):
    audio = tts("hey computer")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.4 < len(audio) / SAMPLE_RATE < 2.0
    assert 0.05 < np.abs(audio).max() <= 1.0


@pytest.mark.parametrize(
    ("a", "b"),
    [(("en-US", "m3"), ("en-GB-scotland", "f4")), (("en-US", ""), ("en-US", "f2")), (("en-029", "Andy"), ("en", "m1"))],
)
def test_voices_really_differ(tts, a, b):
    """Two voices saying the same word differ far more than two renditions by one voice (espeak jitters)."""
    first, again = tts("hey computer", *a), tts("hey computer", *a, speed=1.0 + 1e-6)  # a second rendition
    other = tts("hey computer", *b)
    same = np.linalg.norm(spectrum(first) - spectrum(again))
    different = np.linalg.norm(spectrum(first) - spectrum(other))
    assert different > 5 * same + 0.1, (same, different)


def test_prosody_changes_duration_and_pitch(tts):
    slow, fast = tts("hey computer", speed=0.7), tts("hey computer", speed=1.4)
    assert len(slow) > 1.5 * len(fast)
    low, high = tts("hey computer", pitch=0.1), tts("hey computer", pitch=0.9)
    assert np.linalg.norm(spectrum(low) - spectrum(high)) > 0.3


def test_500_clips_get_hundreds_of_distinct_voice_settings(backend):
    drawn = draw_voice_settings(backend.voices(), 500, np.random.default_rng(0), SynthSettings())
    assert len({d.voice.id for d in drawn}) == 500  # decks: no voice repeats before all were used
    assert len(set(drawn)) == 500
    speeds = np.array([d.speed for d in drawn])
    assert speeds.min() >= 0.7 and speeds.max() <= 1.4 and speeds.std() > 0.1


def test_settings_are_validated():
    with pytest.raises(ValueError, match="speed"):
        SynthSettings(speed=(1.5, 1.0))
    with pytest.raises(ValueError, match="qc_transcriber"):
        SynthSettings(qc_transcriber="google")


def test_optional_backends_are_skipped_cleanly():
    with pytest.raises(ValueError, match="unknown TTS backend"):
        build_backend("sapi")
    if shutil.which("flite") is None:
        with pytest.raises(FileNotFoundError, match="flite"):
            build_backend("flite")
    with pytest.raises((ImportError, FileNotFoundError)):
        build_backend("piper", model_paths=["/nonexistent/voice.onnx"])


def test_pocketsphinx_gate_accepts_the_wake_word_and_rejects_near_misses(tts):
    from wakeword.data.lexicon import load_lexicon

    lexicon = load_lexicon()
    transcribe = build_pocketsphinx_transcriber("hey computer", qc_alternatives(lexicon, "hey computer"))
    voices = [("en-GB-x-rp", ""), ("en-US", ""), ("en", "m3"), ("en-GB-x-rp", "f2")]
    accepted = [lexicon.says(transcribe(tts("hey computer", *v)), "hey computer") for v in voices]
    near_misses = [transcribe(tts(text, *v)) for text in ("hey commuter", "computer hey") for v in voices]
    assert sum(accepted) >= 2, accepted
    assert not any(lexicon.says(t, "hey computer") for t in near_misses), near_misses


def test_tiny_build_makes_a_valid_data_set(tmp_path):
    report = build_synthetic_dataset("Hey  Computer", tmp_path / "ds", n_positives=3, n_confusables=4,
                                     n_generic=3, qc=False, progress=False)  # fmt: skip
    data = DataSet(tmp_path / "ds")
    assert data.check() == []
    assert data.counts() == {"hey computer": {"positive": 3, "negative": 7}}
    assert (report.n_positives, report.n_confusables, report.n_generic, report.n_voice_settings) == (3, 4, 3, 3)
    clips = data.clips()
    assert all(c.source == "synth" and c.speaker.startswith("espeak:") and c.duration_seconds > 0.1 for c in clips)
    assert all(c.meta["speed"] > 0 and c.meta["variant"] == c.speaker.partition("+")[2] for c in clips)
    negatives = [c for c in clips if c.labels["hey computer"] == 0]
    assert {c.meta["kind"] for c in negatives} <= {"near", "partial", "reordered", "generic"}
    assert all(c.text != "hey computer" for c in negatives)
    audio = data.load(clips[0])
    assert audio.dtype == np.float32 and abs(len(audio) / SAMPLE_RATE - clips[0].duration_seconds) < 0.01


def test_qc_drops_and_counts_with_a_pluggable_transcriber(tmp_path):
    """QC logic with a transcriber that hears the wake word (as a homophone) only in longer clips."""

    def transcribe(audio: np.ndarray) -> str:
        return "Hay, computer." if len(audio) > 0.8 * SAMPLE_RATE else "hey commuter"

    report = build_synthetic_dataset("hey computer", tmp_path / "ds", n_positives=4, n_confusables=0, n_generic=0,
                                     seed=1, progress=False, transcriber=transcribe)  # fmt: skip
    clips = DataSet(tmp_path / "ds").clips()
    tried = sum(t for _, t in report.qc_by_voice.values())
    assert report.n_positives == len(clips) == sum(a for a, _ in report.qc_by_voice.values())
    assert tried == report.n_positives + report.n_rejected and report.n_rejected > 0
    assert set(report.rejected_transcripts) == {"hey commuter"}
    assert all(c.duration_seconds > 0.8 and c.meta["qc_transcript"] == "Hay, computer." for c in clips)
    assert 0 < report.acceptance_rate < 1
    by_accent = report.acceptance_by("language")
    assert set(by_accent) == {v.split(":")[1].partition("+")[0] for v in report.qc_by_voice}
    assert all(0 <= rate <= 1 for rate in by_accent.values())
    assert "QC (transcribe)" in report.summary()


def _manifest_and_audio(root) -> tuple[str, dict[str, bytes]]:
    manifest = (root / "clips.jsonl").read_text()
    return manifest, {p.name: p.read_bytes() for p in sorted((root / "audio").iterdir())}


def test_the_same_seed_gives_the_same_clips_with_one_or_two_render_workers(tmp_path):
    """espeak-ng seeds its noise from the clock and carries state between utterances; rendering in fresh
    processes per fixed chunk, seeded per chunk, must make the data set a function of the seed alone."""
    counts = {"n_positives": 40, "n_confusables": 20, "n_generic": 10, "qc": False, "progress": False}  # 2+ chunks
    runs = {}
    for name, workers in (("a", 2), ("b", 2), ("serial", 1)):
        settings = SynthSettings(seed=3, workers=workers)
        build_synthetic_dataset("hey computer", tmp_path / name, settings=settings, **counts)
        runs[name] = _manifest_and_audio(tmp_path / name)
    assert len(runs["a"][1]) == 70 and runs["a"][0].count("\n") == 70
    assert runs["a"] == runs["b"] == runs["serial"]  # manifests and every audio byte
    other = build_synthetic_dataset("hey computer", tmp_path / "seed4", seed=4, **counts)
    assert other.n_positives == 40 and _manifest_and_audio(tmp_path / "seed4")[1] != runs["a"][1]


def test_a_failing_render_job_raises_with_the_workers_reason():
    from wakeword.data.render import Renderer, RenderError
    from wakeword.data.tts import EspeakBackend, Voice, VoiceSettings

    backend = EspeakBackend()
    bad = VoiceSettings(Voice("espeak:xx-nowhere", "espeak", "xx-nowhere"))
    renderer = Renderer(backend, workers=2)
    try:
        with pytest.raises(RenderError, match="no voice 'xx-nowhere'"):
            list(renderer.render([("hello", bad)], seed=0, stream=1))
    finally:
        renderer.close()
