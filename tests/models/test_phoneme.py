"""The phoneme pipeline on real TTS audio: PocketSphinx's acoustic model, CMUdict, nothing trained."""

import numpy as np
import pytest
import torch

from wakeword.checkpoint import load_detector, save_detector
from wakeword.data.tts import EspeakBackend, Voice, VoiceSettings
from wakeword.models.base import DetectorConfig
from wakeword.models.phoneme import PhonemeDetector, build_model, phrase_pronunciations

WINDOW_SAMPLES = 24000


@pytest.fixture(scope="module")
def speak():
    """Real TTS: espeak-ng in-process through the shared synthesiser (no system binary)."""
    backend = EspeakBackend()

    def say(text: str, accent: str = "en-US") -> np.ndarray:
        return backend.synthesize(text, VoiceSettings(Voice(f"espeak:{accent}", "espeak", accent)))

    return say


def window(speech: np.ndarray, seed: int = 0) -> np.ndarray:
    """1.5 s of faint noise with the speech 0.15 s in."""
    audio = np.random.default_rng(seed).normal(0.0, 0.003, WINDOW_SAMPLES).astype(np.float32)
    speech = speech[: WINDOW_SAMPLES - 2400]
    audio[2400 : 2400 + len(speech)] += speech
    return audio


@pytest.fixture(scope="module")
def detector():
    return build_model(DetectorConfig(family="phoneme", wake_words=("hey computer",)))


@pytest.mark.parametrize("voice", ["en-US", "en-GB-x-rp"])
def test_clip_with_the_word_scores_higher_than_clips_without(speak, detector, voice):
    positive = window(speak("hey computer", voice))
    negatives = [window(speak(text, voice), i) for i, text in enumerate(["good morning everyone", "play some music"])]
    scores = detector.score(torch.from_numpy(np.stack([positive, *negatives])))[:, 0]
    assert scores.shape == (3,)
    assert float(scores[0]) > float(scores[1:].max())
    assert float(scores[0]) > 0.0 > float(scores[1:].max())  # logits: the default offset sits between them


def test_scores_are_continuous_and_independent_of_scoring_order(speak, detector):
    a = torch.from_numpy(window(speak("hey computer")))[None]
    b = torch.from_numpy(window(speak("what time is it")))[None]
    first = detector.llr(a)
    detector.llr(b)
    detector.llr(torch.zeros(1, WINDOW_SAMPLES))
    torch.testing.assert_close(detector.llr(a), first, rtol=0, atol=0)
    batch = detector.llr(torch.cat([a, b, a]))
    assert batch[0, 0] == batch[2, 0] == first[0, 0] and batch[1, 0] < batch[0, 0]
    assert batch[1, 0] > detector.settings.floor  # a real ratio, not the floor: thresholds can be swept


def test_silence_is_not_the_word(detector):
    assert float(detector.score(torch.zeros(1, WINDOW_SAMPLES))[0, 0]) < -4.6  # logit: probability < 0.01


def test_several_words_and_custom_pronunciations(speak):
    config = DetectorConfig(
        family="phoneme",
        wake_words=("hey computer", "zorblax"),
        head={"pronunciations": {"zorblax": "Z AO R B L AE K S"}},
    )
    model = build_model(config)
    logits = model(torch.from_numpy(np.stack([window(speak("hey computer")), window(speak("zorblax"))])))
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    assert logits[0, 0] > logits[1, 0] and logits[1, 1] > logits[0, 1]


def test_pronunciation_variants_from_cmudict():
    assert phrase_pronunciations("hey computer") == ["HH EY K AH M P Y UW T ER"]
    assert phrase_pronunciations("Jarvis!") == ["JH AA R V AH S", "JH AA R V IH S"]
    assert phrase_pronunciations("x", {"x": "eh k s"}) == ["EH K S"]
    with pytest.raises(ValueError, match="unknown phoneme head setting"):
        build_model(DetectorConfig(family="phoneme", wake_words=("hey",), head={"scael": 1.0}))


def test_save_and_load_round_trip(tmp_path, speak, detector):
    config = detector.config.replace(head={**detector.config.head, "offset": -2.0})
    model = build_model(config)
    assert sum(p.numel() for p in model.parameters()) == 0
    save_detector(model, tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    assert isinstance(loaded, PhonemeDetector) and loaded.config == model.config
    audio = torch.from_numpy(window(speak("hey computer")))[None]
    torch.testing.assert_close(loaded(audio), model(audio))
    assert loaded.settings.offset == -2.0
