"""Family `phoneme`: the classic hand-designed pipeline, with nothing trained.

Acoustic model (PocketSphinx's bundled US-English phonetically-tied-mixture HMMs) -> phone search -> the
wake word's pronunciations from the shared lexicon (CMUdict, espeak-ng for words it lacks). The score of a
window is a log-likelihood ratio (LLR): the best path through the wake word's phone HMMs minus the best
path through a free loop of all phones over the same frames, maximised over where the word starts and
ends. PocketSphinx's keyphrase search (`kws`) computes exactly this ratio in one frame-synchronous pass;
we set its detection threshold so low that it reports the ratio for every window, which makes the score
continuous and lets thresholds be swept like the trained families'. By default the LLR is divided by the
word's duration (nats per frame: AUC 0.93 for "hey computer" and 0.99 for "jarvis", against 0.92 and 0.91
for the total LLR, on 12 espeak-ng positives and 36 negatives including confusables), and `head` maps it
to a logit:
    logit = scale * (llr - offset)
so sigmoid(logit) is monotone in the evidence. The threshold itself is calibrated on data by the shared
metrics code, as for the other families.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from wakeword.data.lexicon import load_lexicon, words_of
from wakeword.models.base import Detector, DetectorConfig

LOG_BASE = 1.0001  # PocketSphinx's default log base ("logbase")
SCORE_SHIFT = 10  # HMM path scores are log-base-1.0001 values shifted right by 10 bits (SENSCR_SHIFT)
NATS_PER_UNIT = (1 << SCORE_SHIFT) * math.log(LOG_BASE)
KWS_MAX = 1500  # PocketSphinx subtracts this from each detection's ratio (kws_search.c)
# Dither: digitally silent input makes every model fit equally well (an LLR near 0 for any word);
# a fixed, reproducible noise floor 90 dB below full scale removes that degenerate case.
DITHER_AMPLITUDE = 3e-5


@dataclass(frozen=True)
class PhonemeSettings:
    """Settings of the pipeline (saved under `head` in config.json)."""

    scale: float = 2.0  # logit per unit of score
    offset: float = -1.5  # the score that maps to logit 0, probability 0.5
    per_frame: bool = True  # score = LLR / the word's duration in frames (nats per frame), else total nats
    floor_llr: float | None = None  # lowest score, also when the word's path was pruned; None: -30 or -3000

    phone_loop_penalty: float = 0.1  # probability of each phone transition in the free loop (kws_plp)
    beam: float = 1e-300  # pruning of the word's path; very wide, so a score exists for every window
    max_variants: int = 8  # alternative pronunciations tried per wake word (the best one scores)
    pronunciations: dict[str, str] = field(default_factory=dict)  # word -> ARPAbet override

    @property
    def floor(self) -> float:
        if self.floor_llr is not None:
            return self.floor_llr
        return -30.0 if self.per_frame else -3000.0

    @classmethod
    def from_dict(cls, data: dict) -> PhonemeSettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown phoneme head setting(s) {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def model_dir() -> Path:
    """The US-English acoustic model bundled with the pocketsphinx wheel."""
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us"


def phrase_pronunciations(phrase: str, overrides: dict[str, str] | None = None, max_variants: int = 8) -> list[str]:
    """ARPAbet phone strings for a wake phrase, one per combination of its words' variants.

    overrides: {word or whole phrase: phones}; they take precedence over the shared lexicon. Raises
    KeyError naming the word when it has no pronunciation (give one in head.pronunciations).
    """
    overrides = {k.lower(): v.upper() for k, v in (overrides or {}).items()}
    if phrase.lower() in overrides:
        return [overrides[phrase.lower()]]
    options = [[overrides[word]] if word in overrides else _lexicon_pronunciations(word) for word in words_of(phrase)]
    if not options:
        raise KeyError(f"wake phrase {phrase!r} has no words")
    return [" ".join(combo) for combo in itertools.islice(itertools.product(*options), max_variants)]


def _lexicon_pronunciations(word: str) -> list[str]:
    """CMUdict's pronunciations of `word` (espeak-ng's where CMUdict has none), as ARPAbet strings."""
    try:
        found = load_lexicon().pronunciations(word)
    except (ImportError, KeyError, OSError, RuntimeError, ValueError) as error:
        raise KeyError(f"no pronunciation for {word!r} ({error}); set head.pronunciations[{word!r}]") from None
    if not found:
        raise KeyError(f"no pronunciation for {word!r}; set head.pronunciations[{word!r}]")
    return [" ".join(phones) for phones in found]


def _variant_word(word_index: int, variant_index: int) -> str:
    return f"wakeword_{word_index}_{variant_index}"


class _Scorer:
    """One PocketSphinx decoder with one keyphrase search over every variant of every wake word.

    Each wake phrase is added as ONE dictionary entry whose pronunciation spans all its words, so the
    phones across a word boundary get proper triphones. `lock` serialises windows: the decoder has one state.
    """

    def __init__(self, phrases: tuple[str, ...], settings: PhonemeSettings) -> None:
        import pocketsphinx

        self.lock = threading.Lock()
        self.decoder = pocketsphinx.Decoder(
            hmm=str(model_dir() / "en-us"),
            dict=None,
            lm=None,
            cmn="batch",  # per-window cepstral mean: a window's score must not depend on earlier windows
            beam=settings.beam,
            kws_threshold=1e-300,  # report every window's ratio, however poor (the score must be continuous)
            kws_delay=0,
            kws_plp=settings.phone_loop_penalty,
            loglevel="ERROR",
        )
        # The model's feat.params turns on spectral noise subtraction, whose noise estimate carries over
        # between utterances; it overrides constructor arguments, so switch it off afterwards.
        self.decoder.config["remove_noise"] = False
        self.decoder.reinit_feat()
        self.word_of: dict[str, int] = {}
        for index, phrase in enumerate(phrases):
            for variant, phones in enumerate(
                phrase_pronunciations(phrase, settings.pronunciations, settings.max_variants)
            ):
                self.decoder.add_word(_variant_word(index, variant), phones, True)
                self.word_of[_variant_word(index, variant)] = index
        self._folder = tempfile.TemporaryDirectory(prefix="wakeword-kws-")
        self._keyphrase_file = Path(self._folder.name) / "keyphrases.txt"
        self._keyphrase_file.write_text("\n".join(self.word_of) + "\n", encoding="utf-8")

    def _reset_search(self) -> None:
        """A fresh keyphrase search: PocketSphinx's kws search does not clear the word's HMMs at the
        start of an utterance, so the previous window's partial paths would leak into this one."""
        self.decoder.add_kws("wakewords", str(self._keyphrase_file))
        self.decoder.activate_search("wakewords")

    def llr(self, pcm: bytes, n_words: int, settings: PhonemeSettings) -> np.ndarray:
        """Best keyphrase-vs-phone-loop LLR per wake word over one window of 16-bit PCM (nats, or nats/frame)."""
        best = np.full(n_words, settings.floor, dtype=np.float64)
        with self.lock:
            self._reset_search()
            self.decoder.start_utt()
            self.decoder.process_raw(pcm, full_utt=True)
            self.decoder.end_utt()
            segments = list(self.decoder.seg() or [])
        for segment in segments:
            value = _segment_llr(segment.prob, segment.end_frame - segment.start_frame + 1, settings.per_frame)
            index = self.word_of[segment.word]
            best[index] = max(best[index], value)
        return best


def _segment_llr(prob: float, n_frames: int, per_frame: bool) -> float:
    """The ratio PocketSphinx stored (in shifted log units, minus KWS_MAX) back in nats."""
    units = round(math.log(max(prob, 1e-300)) / math.log(LOG_BASE)) + KWS_MAX
    nats = units * NATS_PER_UNIT
    return nats / max(n_frames, 1) if per_frame else nats


_SCORERS: dict[tuple, _Scorer] = {}
_SCORERS_LOCK = threading.Lock()


def get_scorer(phrases: tuple[str, ...], settings: PhonemeSettings) -> _Scorer:
    """One decoder per process and set of wake words, reused across windows and detector instances.

    Keyed by process id: a decoder is native state that a forked worker must not share."""
    key = (os.getpid(), phrases, repr(sorted(settings.to_dict().items())))
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = _Scorer(phrases, settings)
        return _SCORERS[key]


@lru_cache(maxsize=8)
def _dither(n_samples: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, DITHER_AMPLITUDE, n_samples).astype(np.float32)


def to_pcm16(window: np.ndarray) -> bytes:
    """Float window in [-1, 1], shape (n_samples,) -> little-endian 16-bit PCM with the fixed dither."""
    dithered = np.clip(window.astype(np.float32) + _dither(len(window)), -1.0, 1.0)
    return (dithered * 32767.0).round().astype("<i2").tobytes()


class PhonemeDetector(Detector):
    """No trainable weights: scores come from PocketSphinx; config.head holds PhonemeSettings."""

    family = "phoneme"

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.settings = PhonemeSettings.from_dict(config.head)
        self.config = config.replace(head=self.settings.to_dict())  # saved configs list every setting
        for phrase in config.wake_words:  # fail at build time, naming the word, not at the first window
            phrase_pronunciations(phrase, self.settings.pronunciations, self.settings.max_variants)

    def llr(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (batch, n_samples) float32 16 kHz -> LLR (batch, n_words), float64: nats per frame of the word
        (settings.per_frame) or nats."""
        scorer = get_scorer(self.config.wake_words, self.settings)
        windows = audio.detach().to("cpu", torch.float32).numpy()
        if windows.ndim == 1:
            windows = windows[None]
        rows = [scorer.llr(to_pcm16(w), len(self.wake_words), self.settings) for w in windows]
        return torch.from_numpy(np.stack(rows))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (batch, window_samples) float32 16 kHz -> logits (batch, n_words) = scale * (llr - offset)."""
        logits = self.settings.scale * (self.llr(audio) - self.settings.offset)
        return logits.to(device=audio.device, dtype=torch.float32)


def build_model(config: DetectorConfig) -> PhonemeDetector:
    return PhonemeDetector(config)
