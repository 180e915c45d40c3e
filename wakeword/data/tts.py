"""Text to speech: the backends that synthesise the wake word and the negatives (`build_backend`).

The default backend drives the libespeak-ng that the PyPI wheel `espeakng-loader` ships, through ctypes:
every English accent (en, en-US, en-GB-scotland, en-029, ...) times every voice variant in
espeak-ng-data/voices/!v (f1..f5, m1..m8, klatt, Andy, ...), 8 x 105 = 840 voices, each with a random speaking
rate, pitch and pitch range, so 500 clips come from about 500 distinct voice settings. espeak-ng keeps one
global state per process, so calls are serialised by a lock; synthesis is ~1000x faster than real time.

Optional backends with the same interface: Piper (`piper` importable, voice .onnx files the user names) and
the flite binary (on PATH). `build_backend` raises ImportError/FileNotFoundError when one is absent.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from wakeword.audio import SAMPLE_RATE, load_audio, resample

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
