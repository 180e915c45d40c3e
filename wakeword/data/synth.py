"""Synthetic speech: TTS backends, ASR quality control and `build_synthetic_dataset`.

The default backend drives the libespeak-ng that the PyPI wheel `espeakng-loader` ships, through ctypes:
every English accent (en, en-US, en-GB-scotland, en-029, ...) times every voice variant in
espeak-ng-data/voices/!v (f1..f5, m1..m8, klatt, Andy, ...), 8 x 105 = 840 voices, each with a random speaking
rate, pitch and pitch range, so 500 clips come from about 500 distinct voice settings. espeak-ng keeps one
global state per process, so calls are serialised by a lock; synthesis is ~1000x faster than real time. The
builder renders in worker processes, chunk by chunk with a seed per chunk (wakeword.data.render), because that
state makes a clip depend on everything the process rendered before it.

Optional backends with the same interface: Piper (`piper` importable, voice .onnx files the user names) and
the flite binary (on PATH). `build_backend` raises ImportError/FileNotFoundError when one is absent.

Quality control: every positive is transcribed, in batches (Whisper tiny.en via wakeword.encoders.whisper when
that module is there, else PocketSphinx) and dropped unless the transcript says the wake word (Lexicon.says:
spelling or pronunciation). `build_synthetic_dataset` writes positives, confusable and generic negatives.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from wakeword.audio import SAMPLE_RATE, load_audio, resample
from wakeword.data.clips import DataSet, normalize_word
from wakeword.data.lexicon import COMMON_WORDS, Lexicon, load_lexicon, words_of
from wakeword.timing import timed

log = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_IPA_WITH_SEPARATOR = 0x02 | (ord("_") << 8)  # IPA output, phones separated by "_"
ESPEAK_NORMAL_WPM = 175  # espeak-ng's default speaking rate, words per minute
EXCLUDED_ACCENTS = ("en-Shaw",)  # Shavian script: reads the Shavian alphabet, not Latin text


@dataclass(frozen=True)
class Voice:
    """One voice of a backend: `id` is unique across backends ("espeak:en-US+f3")."""

    id: str
    backend: str
    language: str
    variant: str = ""


@dataclass(frozen=True)
class VoiceSettings:
    """A voice plus prosody. `speed` multiplies the backend's normal rate; `pitch` and `pitch_range` are
    fractions of the backend's scale (espeak: 0..100), 0.5 being the voice's default."""

    voice: Voice
    speed: float = 1.0
    pitch: float = 0.5
    pitch_range: float = 0.5

    def to_meta(self) -> dict:
        return {**asdict(self.voice), "speed": round(self.speed, 3), "pitch": round(self.pitch, 3),
                "pitch_range": round(self.pitch_range, 3)}  # fmt: skip


@runtime_checkable
class TTSBackend(Protocol):
    """What the data-set builder needs from a speech synthesiser."""

    name: str

    def voices(self) -> list[Voice]: ...

    def synthesize(self, text: str, settings: VoiceSettings) -> np.ndarray:
        """Speech for `text`: (n_samples,) float32 mono at 16 kHz, in [-1, 1]."""
        ...


# -- espeak-ng through ctypes ------------------------------------------------------------------------------
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """The process's libespeak-ng (one global state): every call holds `lock`."""

    lock = threading.RLock()

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # espeak-ng >= 1.52; older ones seed from the clock only
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"{espeakng_loader.get_library_path()}: espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced: espeak calls it later
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), n_samples: int, _events: int) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0: continue synthesis

    def set_voice(self, name: str) -> None:
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"espeak-ng: no voice {name!r} in {self.data_path}")

    def seed(self, seed: int) -> None:
        """Seed espeak-ng's noise generator (breath), which it otherwise seeds from the clock at start-up."""
        if not hasattr(self.lib, "espeak_ng_SetRandSeed"):
            log.warning("this libespeak-ng cannot be seeded: synthetic speech will differ between runs")
            return
        with self.lock:
            self.lib.espeak_ng_SetRandSeed(seed % 2**31)

    def synth(self, text: str, name: str, rate_wpm: int, pitch: int, pitch_range: int) -> np.ndarray:
        """int16 samples at `self.sample_rate`."""
        with self.lock:
            self.set_voice(name)
            for parameter, value in ((_PARAM_RATE, rate_wpm), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
                self.lib.espeak_SetParameter(parameter, int(value), 0)
            self._chunks = []
            data = text.encode("utf-8")
            error = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if error != 0:
                raise RuntimeError(f"espeak-ng: synthesis of {text!r} failed (error {error})")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def phonemes(self, text: str, name: str) -> list[str]:
        with self.lock:
            self.set_voice(name)
            pointer, out = ctypes.c_char_p(text.encode("utf-8")), []
            while pointer.value:  # one clause per call; espeak advances the pointer
                out.append(self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _IPA_WITH_SEPARATOR))
        return [p for chunk in out for word in chunk.decode("utf-8").split() for p in word.split("_") if p]


_ENGINE: tuple[int, _Espeak] | None = None


def _espeak() -> _Espeak:
    """The engine of this process (a forked child builds its own: the parent's callback state is not its own)."""
    global _ENGINE
    with _Espeak.lock:
        if _ENGINE is None or _ENGINE[0] != os.getpid():
            _ENGINE = (os.getpid(), _Espeak())
        return _ENGINE[1]


def espeak_phonemes(text: str, language: str = "en-US") -> list[str]:
    """espeak-ng's IPA phones for `text` ("hey" -> ["h", "ˈeɪ"]); stress marks stay on the vowels."""
    return _espeak().phonemes(text, language)


class EspeakBackend:
    """espeak-ng voices: English accents x variants (see module doc)."""

    name = "espeak"

    def __init__(self, accents: Sequence[str] | None = None, variants: Sequence[str] | None = None) -> None:
        data = _espeak().data_path
        found = sorted(p.name for p in (data / "lang").rglob("en*") if p.is_file())
        self.accents = list(accents) if accents else [a for a in found if a not in EXCLUDED_ACCENTS]
        all_variants = sorted(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())
        self.variants = ["", *all_variants] if variants is None else list(variants)

    def voices(self) -> list[Voice]:
        return [
            Voice(f"espeak:{a}{'+' + v if v else ''}", self.name, a, v) for a in self.accents for v in self.variants
        ]

    def synthesize(self, text: str, settings: VoiceSettings) -> np.ndarray:
        voice = settings.voice
        name = f"{voice.language}+{voice.variant}" if voice.variant else voice.language
        engine = _espeak()
        pcm = engine.synth(text, name, round(ESPEAK_NORMAL_WPM * settings.speed), round(100 * settings.pitch),
                           round(100 * settings.pitch_range))  # fmt: skip
        return resample(pcm.astype(np.float32) / 32768.0, engine.sample_rate, SAMPLE_RATE)


class PiperBackend:
    """Piper neural voices (`pip install piper-tts`); one Voice per .onnx file the user names.
    Piper has no pitch control: `pitch` and `pitch_range` are ignored, `speed` sets length_scale."""

    name = "piper"

    def __init__(self, model_paths: Sequence[str | os.PathLike]) -> None:
        import piper  # ImportError when not installed: the caller skips this backend

        self._piper = piper
        self.paths = [Path(p) for p in model_paths]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if not self.paths or missing:
            raise FileNotFoundError(f"Piper voice file(s) not found: {missing or 'none given'}")
        self._loaded: dict[str, object] = {}

    def voices(self) -> list[Voice]:
        return [Voice(f"piper:{p.stem}", self.name, p.stem.split("-")[0]) for p in self.paths]

    def synthesize(self, text: str, settings: VoiceSettings) -> np.ndarray:
        path = next(p for p in self.paths if f"piper:{p.stem}" == settings.voice.id)
        if path.stem not in self._loaded:
            self._loaded[path.stem] = self._piper.PiperVoice.load(str(path))
        voice = self._loaded[path.stem]
        config = self._piper.SynthesisConfig(length_scale=1.0 / settings.speed)
        chunks = list(voice.synthesize(text, syn_config=config))
        audio = np.concatenate([c.audio_float_array for c in chunks]) if chunks else np.zeros(0, np.float32)
        return resample(audio.astype(np.float32), chunks[0].sample_rate if chunks else SAMPLE_RATE, SAMPLE_RATE)


class FliteBackend:
    """The `flite` command-line synthesiser, when it is on PATH; its built-in voices."""

    name = "flite"

    def __init__(self, binary: str = "flite") -> None:
        path = shutil.which(binary)
        if path is None:
            raise FileNotFoundError(f"{binary}: not on PATH (install the flite package to use this backend)")
        self.binary = path

    def voices(self) -> list[Voice]:
        listing = subprocess.run([self.binary, "-lv"], capture_output=True, text=True, check=True).stdout
        names = listing.split(":", 1)[-1].split()
        return [Voice(f"flite:{n}", self.name, n) for n in names]

    def synthesize(self, text: str, settings: VoiceSettings) -> np.ndarray:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "out.wav"
            command = [self.binary, "-voice", settings.voice.language, "--setf",
                       f"duration_stretch={1.0 / settings.speed:.3f}", "--setf",
                       f"int_f0_target_mean={70 + 160 * settings.pitch:.0f}", "-t", text, "-o", str(out)]  # fmt: skip
            subprocess.run(command, capture_output=True, check=True)
            return load_audio(out)


BACKENDS = ("espeak", "piper", "flite")


def build_backend(name: str = "espeak", **options: object) -> TTSBackend:
    """A backend by name; Piper needs `model_paths=[...]`. Raises ImportError/FileNotFoundError when absent."""
    factories = {"espeak": EspeakBackend, "piper": PiperBackend, "flite": FliteBackend}
    if name not in factories:
        raise ValueError(f"unknown TTS backend {name!r}; choose one of {BACKENDS}")
    return factories[name](**options)


def available_backends() -> list[str]:
    """Backends usable here without extra arguments (Piper always needs a voice file, so it is not listed)."""
    names = ["espeak"]
    if shutil.which("flite"):
        names.append("flite")
    return names


# -- quality control -----------------------------------------------------------------------------------------
Transcriber = Callable[[np.ndarray], str]
QC_TRANSCRIBERS = ("auto", "whisper", "pocketsphinx")
_DITHER = 1e-3  # pocketsphinx's energy features break on digital silence, which TTS output starts with


def build_pocketsphinx_transcriber(
    wake_word: str, alternatives: Sequence[str] = (), n_fillers: int = 30, lexicon: Lexicon | None = None
) -> Transcriber:
    """A closed-set PocketSphinx recogniser: it answers the wake word, one of `alternatives` (its confusables)
    or one of `n_fillers` common words. On espeak speech open-vocabulary PocketSphinx is mostly wrong (and a
    free word loop is slow and swallows everything), but choosing among near misses is reliable: a clip
    passes when the wake word beats every near miss. Weaker than Whisper; the fallback when it is absent.

    Returns a Transcriber: (n_samples,) float32 16 kHz -> text ("" when nothing was recognised)."""
    from pocketsphinx import Decoder

    lexicon = lexicon or load_lexicon()
    texts = [wake_word, *alternatives, *COMMON_WORDS[:n_fillers]]
    phrases = [p for p in dict.fromkeys(" ".join(words_of(t)) for t in texts) if p and "'" not in p]
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=None)
    for word in sorted({w for p in phrases for w in p.split()}):
        if decoder.lookup_word(word) is None:
            decoder.add_word(word, " ".join(lexicon.pronunciations(word)[0]), False)
    rule = " | ".join(f"( {p} )" for p in phrases)
    decoder.add_jsgf_string("qc", f"#JSGF V1.0;\ngrammar qc;\npublic <s> = {rule};\n")
    decoder.activate_search("qc")
    rng = np.random.default_rng(0)
    lock = threading.Lock()

    def transcribe(audio: np.ndarray) -> str:
        pad = np.zeros(SAMPLE_RATE // 4, np.float32)
        padded = np.concatenate([pad, audio, pad])
        pcm = np.clip(padded + rng.normal(0.0, _DITHER, padded.shape), -1, 1)
        with lock:
            decoder.start_utt()
            decoder.process_raw((pcm * 32767).astype(np.int16).tobytes(), full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""

    return transcribe


def build_qc_transcriber(
    kind: str = "auto", wake_word: str = "", alternatives: Sequence[str] = ()
) -> tuple[str, Transcriber]:
    """(name, transcriber) for quality control: "whisper" (wakeword.encoders.whisper, tiny.en),
    "pocketsphinx", or "auto" (Whisper when its module is importable, else PocketSphinx)."""
    if kind not in QC_TRANSCRIBERS:
        raise ValueError(f"unknown QC transcriber {kind!r}; choose one of {QC_TRANSCRIBERS}")
    if kind in ("auto", "whisper"):
        try:
            from wakeword.encoders.whisper import build_transcriber

            return "whisper-tiny.en", build_transcriber(name="whisper-tiny.en")
        except Exception as error:  # auto: any failure to get Whisper (module or weights) falls back
            if kind == "whisper":
                raise
            log.info("QC falls back to PocketSphinx: Whisper transcriber unavailable (%s)", error)
    return "pocketsphinx", build_pocketsphinx_transcriber(wake_word, alternatives)


# -- the data-set builder ------------------------------------------------------------------------------------
def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class SynthSettings:
    """How `build_synthetic_dataset` makes a data set. Ranges are (low, high), drawn uniformly per clip."""

    n_positives: int = _help("clips of the wake word that pass quality control", 300)
    n_confusables: int = _help("near-miss negatives: near words, partial phrases, reorderings", 150)
    n_generic: int = _help("negatives of random words and sentences", 150)
    seed: int = _help("random seed of voices, prosody and texts", 0)
    qc: bool = _help("transcribe positives and drop those whose transcript misses the wake word", True)
    qc_transcriber: str = _help("auto | whisper | pocketsphinx (auto: Whisper when available)", "auto")
    max_attempts_factor: float = _help("give up after this many syntheses per wanted positive", 3.0)
    speed: tuple[float, float] = _help("speaking-rate factor (1 = the voice's normal rate)", (0.7, 1.4))
    pitch: tuple[float, float] = _help("pitch, fraction of the backend's scale (0.5 = default)", (0.15, 0.85))
    pitch_range: tuple[float, float] = _help("intonation range, fraction of the backend's scale", (0.1, 0.9))
    batch_size: int = _help("clips written per atomic manifest update", 50)
    qc_batch_size: int = _help("positives transcribed per QC call (Whisper encodes them in one batch)", 16)
    workers: int = _help("processes rendering espeak-ng speech (seeded per chunk: same audio for any number); "
                         "0 renders in this process, which espeak-ng's state makes irreproducible", 2)  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("speed", "pitch", "pitch_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"SynthSettings.{name}: need 0 <= low <= high, got ({low}, {high})")
        if min(self.n_positives, self.n_confusables, self.n_generic, self.workers) < 0 or self.max_attempts_factor < 1:
            raise ValueError("SynthSettings: counts must be >= 0, workers >= 0 and max_attempts_factor >= 1")
        if self.qc_batch_size < 1 or self.batch_size < 1:
            raise ValueError("SynthSettings: qc_batch_size and batch_size must be >= 1")
        if self.qc_transcriber not in QC_TRANSCRIBERS:
            raise ValueError(f"SynthSettings.qc_transcriber: {self.qc_transcriber!r} not in {QC_TRANSCRIBERS}")


@dataclass
class SynthReport:
    """What a build made. `qc_by_voice` maps voice id -> [accepted, tried]."""

    out_dir: str
    wake_word: str
    n_positives: int = 0
    n_confusables: int = 0
    n_generic: int = 0
    n_rejected: int = 0
    n_voice_settings: int = 0  # distinct (voice, speed, pitch, range) among the positives
    n_voices: int = 0  # distinct voices (accent + variant) among the positives
    qc_transcriber: str = "none"
    qc_by_voice: dict[str, list[int]] = field(default_factory=dict)
    rejected_transcripts: list[str] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        tried = self.n_positives + self.n_rejected
        return self.n_positives / tried if tried else 0.0

    def acceptance_by(self, key: str = "variant") -> dict[str, float]:
        """Acceptance rate grouped by "voice", "language" (accent) or "variant"."""
        groups: dict[str, list[int]] = {}
        for voice_id, (accepted, tried) in self.qc_by_voice.items():
            accent, _, variant = voice_id.split(":", 1)[-1].partition("+")
            name = {"voice": voice_id, "language": accent, "variant": variant or "(default)"}[key]
            total = groups.setdefault(name, [0, 0])
            total[0], total[1] = total[0] + accepted, total[1] + tried
        return {name: accepted / tried for name, (accepted, tried) in sorted(groups.items())}

    def summary(self) -> str:
        counts = f"{self.n_confusables} confusable and {self.n_generic} generic negatives"
        voices = f"{self.n_voice_settings} voice settings ({self.n_voices} voices)"
        lines = [f"{self.out_dir}: {self.n_positives} positives of {self.wake_word!r} from {voices}, {counts}"]
        if self.qc_transcriber != "none":
            lines.append(f"QC ({self.qc_transcriber}): accepted {self.acceptance_rate:.0%}, dropped {self.n_rejected}")
            worst = sorted(self.acceptance_by("language").items(), key=lambda item: item[1])
            lines.append("acceptance by accent: " + ", ".join(f"{k} {v:.0%}" for k, v in worst))
        return "\n".join(lines)


def draw_voice_settings(
    voices: Sequence[Voice], n: int, rng: np.random.Generator, settings: SynthSettings
) -> list[VoiceSettings]:
    """n settings; voices are dealt from shuffled decks so every voice is used before any repeats."""
    order: list[Voice] = []
    while len(order) < n:
        order += [voices[i] for i in rng.permutation(len(voices))]
    draw = {name: rng.uniform(*getattr(settings, name), size=n) for name in ("speed", "pitch", "pitch_range")}
    return [VoiceSettings(order[i], float(draw["speed"][i]), float(draw["pitch"][i]), float(draw["pitch_range"][i]))
            for i in range(n)]  # fmt: skip


def _negative_texts(lexicon: Lexicon, wake_word: str, settings: SynthSettings) -> list[tuple[str, str]]:
    """(kind, text) for the confusable and generic negatives: half near words, 30 % partial, 20 % reordered."""
    kinds = lexicon.confusables(wake_word, n_per_kind=max(settings.n_confusables, 10), seed=settings.seed)
    shares = {"near": 0.5, "partial": 0.3, "reordered": 0.2}
    wanted = {k: round(settings.n_confusables * s) if kinds[k] else 0 for k, s in shares.items()}
    wanted["near"] += settings.n_confusables - sum(wanted.values())  # rounding and empty kinds
    texts = [(k, kinds[k][i % len(kinds[k])]) for k in shares for i in range(wanted[k]) if kinds[k]]
    generic = lexicon.generic_texts(settings.n_generic, wake_word, seed=settings.seed + 1)
    return texts + [("generic", t) for t in generic]


def _batch_transcriber(transcriber: Transcriber) -> Callable[[list[np.ndarray]], list[str]]:
    """clips -> transcripts: the transcriber's own batched path (Whisper) when it has one, else clip by clip."""
    batched = getattr(transcriber, "transcribe_batch", None)
    return batched if callable(batched) else lambda clips: [transcriber(audio) for audio in clips]


_POSITIVES, _NEGATIVES = 1, 2  # render streams: each has its own chunk seeds


class _Build:
    """One run of build_synthetic_dataset: renders, checks and writes clips in atomic batches, keeps the tallies.

    Clip ids are derived from (wake word, seed, clips already in the folder, clip number), not drawn at random,
    so that the same command gives the same manifest."""

    def __init__(self, backend: TTSBackend, wake_word: str, settings: SynthSettings, out_dir: str | os.PathLike,
                 report: SynthReport, progress: bool, n_total: int) -> None:  # fmt: skip
        from wakeword.data.render import Renderer

        self.backend, self.wake_word, self.settings, self.report = backend, wake_word, settings, report
        self.rng, self.lexicon = np.random.default_rng(settings.seed), load_lexicon()
        self.dataset, self.pending, self.used = DataSet.create(out_dir), [], set()
        self.id_base, self.n_written = f"{wake_word}|{settings.seed}|{len(self.dataset)}", 0
        self.renderer = Renderer(backend, settings.workers)
        self.bar = tqdm(total=n_total, disable=not progress, desc=f"synth {wake_word!r}")

    def write(self, audio: np.ndarray, label: int, voice: VoiceSettings, text: str, meta: dict) -> None:
        clip_id = "synth-" + hashlib.sha256(f"{self.id_base}|{self.n_written}".encode()).hexdigest()[:16]
        self.n_written += 1
        clip = self.dataset.make_clip(audio, {self.wake_word: label}, "synth", speaker=voice.voice.id, text=text,
                                      meta={**voice.to_meta(), **meta}, clip_id=clip_id)  # fmt: skip
        self.pending.append(clip)
        self.bar.update()
        if len(self.pending) >= self.settings.batch_size:
            self.flush()

    def flush(self) -> None:
        self.dataset.add_clips(self.pending)
        self.pending = []

    def close(self) -> None:
        self.flush()
        self.bar.close()
        self.renderer.close()

    def positives(self, transcriber: Transcriber | None) -> None:
        """Synthesise until n_positives pass QC or max_attempts_factor * n_positives syntheses were tried.
        Attempts are checked `qc_batch_size` at a time but judged in order, so the clips kept are those a
        clip-by-clip check would keep."""
        settings = self.settings
        n_attempts = int(np.ceil(settings.n_positives * (settings.max_attempts_factor if transcriber else 1)))
        voices = draw_voice_settings(self.backend.voices(), n_attempts, self.rng, settings)
        audio = self.renderer.render([(self.wake_word, v) for v in voices], settings.seed, _POSITIVES)
        transcribe = _batch_transcriber(transcriber) if transcriber else None
        for start in range(0, n_attempts, settings.qc_batch_size):
            if self.report.n_positives >= settings.n_positives:
                break
            block = [(voice, next(audio)) for voice in voices[start : start + settings.qc_batch_size]]
            spoken = [clip for _, clip in block if clip.size]
            heard = iter([])
            if transcribe and spoken:
                with timed("quality check"):  # counted apart from synthesis in `wakeword train`'s stage times
                    heard = iter(transcribe(spoken))
            for voice, clip in block:
                if self.report.n_positives >= settings.n_positives:
                    break
                self._judge(voice, clip, next(heard) if transcribe and clip.size else "", transcribe is not None)

    def _judge(self, voice: VoiceSettings, audio: np.ndarray, transcript: str, checked: bool) -> None:
        report = self.report
        accepted = audio.size > 0 and (not checked or self.lexicon.says(transcript, self.wake_word))
        tally = report.qc_by_voice.setdefault(voice.voice.id, [0, 0])
        tally[0], tally[1] = tally[0] + accepted, tally[1] + 1
        if not accepted:
            report.n_rejected += 1
            report.rejected_transcripts.append(transcript)
            return
        qc_meta = {"qc_transcript": transcript} if checked else {}
        self.write(audio, 1, voice, self.wake_word, {"kind": "positive", **qc_meta})
        self.used.add(voice)
        report.n_positives += 1

    def negatives(self, texts: list[tuple[str, str]]) -> None:
        voices = draw_voice_settings(self.backend.voices(), len(texts), self.rng, self.settings)
        jobs = [(text, voice) for (_, text), voice in zip(texts, voices, strict=True)]
        rendered = self.renderer.render(jobs, self.settings.seed, _NEGATIVES)
        for (kind, text), voice, audio in zip(texts, voices, rendered, strict=True):
            if audio.size:
                self.write(audio, 0, voice, text, {"kind": kind})
                self.report.n_confusables += kind != "generic"
                self.report.n_generic += kind == "generic"


def qc_alternatives(lexicon: Lexicon, wake_word: str, n_near: int = 5) -> list[str]:
    """Competitors of the wake word in the PocketSphinx gate: its parts, reorderings and the `n_near` nearest
    words. More near words make the closed-set gate reject good clips ("hey computed" wins on a weak -er)."""
    kinds = lexicon.confusables(wake_word, n_per_kind=20)
    return kinds["partial"] + kinds["reordered"] + kinds["near"][:n_near]


def build_synthetic_dataset(
    wake_word: str,
    out_dir: str | os.PathLike,
    n_positives: int | None = None,
    n_confusables: int | None = None,
    n_generic: int | None = None,
    seed: int | None = None,
    qc: bool | None = None,
    backend: TTSBackend | None = None,
    progress: bool = True,
    transcriber: Transcriber | None = None,
    settings: SynthSettings | None = None,
) -> SynthReport:
    """Synthesise a ready data set at `out_dir` (created or extended): positives labelled {wake_word: 1},
    confusable and generic negatives {wake_word: 0}, source "synth", speaker = voice id, meta = voice
    settings + kind (+ QC transcript). Arguments left None come from `settings` (default SynthSettings()).
    `transcriber` overrides the QC transcriber (audio -> text). Returns counts and QC statistics."""
    overrides = {"n_positives": n_positives, "n_confusables": n_confusables, "n_generic": n_generic,
                 "seed": seed, "qc": qc}  # fmt: skip
    settings = replace(settings or SynthSettings(), **{k: v for k, v in overrides.items() if v is not None})
    wake_word = normalize_word(wake_word)
    if not words_of(wake_word):
        raise ValueError(f"wake word {wake_word!r} has no letters to say")
    lexicon = load_lexicon()
    negatives = _negative_texts(lexicon, wake_word, settings)
    report = SynthReport(str(out_dir), wake_word)
    # the render processes start first: their imports overlap with loading Whisper
    build = _Build(backend or EspeakBackend(), wake_word, settings, out_dir, report, progress,
                   settings.n_positives + len(negatives))  # fmt: skip
    try:
        if settings.qc and settings.n_positives and transcriber is None:
            alternatives = qc_alternatives(lexicon, wake_word)
            report.qc_transcriber, transcriber = build_qc_transcriber(settings.qc_transcriber, wake_word, alternatives)
        elif settings.qc and transcriber is not None:
            report.qc_transcriber = getattr(transcriber, "__name__", "custom")
        build.positives(transcriber if settings.qc else None)
        build.negatives(negatives)
    finally:
        build.close()
    report.n_voice_settings, report.n_voices = len(build.used), len({v.voice.id for v in build.used})
    return report
