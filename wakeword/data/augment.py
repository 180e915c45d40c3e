"""Data augmentation: background noise at a drawn SNR, room reverberation, gain, time shift, speed.

Two levels of API:
- array level: `augment_audio(audio, rng, settings, noise_bank, rir_bank)`, used on the fly by the training
  Dataset, with each step a small public function (`mix_at_snr`, `apply_rir`, `change_speed`, ...);
- record level: `augment_dataset(src, dst, n_copies, settings, seed)` writes augmented copies as new clips
  (source "augmented", meta: parent id and the steps applied) and never touches the source audio.

SNR definition: speech power is the mean power of the *active* 10 ms frames of the speech signal, those
within `ACTIVE_FLOOR_DB` (40 dB) of the loudest frame; noise power is the mean power of the noise over the
whole mix. Padding a clip with silence therefore does not change the SNR a mix is made at.

All randomness comes from a numpy Generator, so the same seed gives the same audio.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from wakeword.audio import HOP_LENGTH, SAMPLE_RATE, AudioError, load_audio, resample
from wakeword.data.clips import AUDIO_SUFFIXES, Clip, ClipWriter, DataSet, new_clip_id

log = logging.getLogger(__name__)

ACTIVE_FLOOR_DB = 40.0  # frames quieter than this below the loudest frame are silence, not speech
BACKGROUND_GAP_DB = 25.0  # a median frame this far below the peak is the background, not the word
MAX_SPEECH_GAP_SECONDS = 0.5  # a pause inside one utterance ("hey ... computer"); longer: something else
COLOURS = ("white", "pink", "brown")
STEPS = ("speed", "rir", "shift", "noise", "channel", "gain")  # the order augment_audio applies them in
_EPS = 1e-12


@dataclass(frozen=True)
class AugmentSettings:
    """How clips are augmented. Ranges are (low, high), drawn uniformly."""

    snr_db: tuple[float, float] = field(default=(0.0, 20.0), metadata={"help": "speech-to-noise ratio range, dB"})
    p_noise: float = field(default=0.8, metadata={"help": "probability of mixing in background noise"})
    p_rir: float = field(default=0.5, metadata={"help": "probability of convolving with a room impulse response"})
    p_speed: float = field(default=0.5, metadata={"help": "probability of speed perturbation"})
    p_channel: float = field(
        default=0.5,
        metadata={"help": "probability of a random recording channel: microphone response, band limit, codec"},
    )
    gain_db: tuple[float, float] = field(default=(-12.0, 6.0), metadata={"help": "gain range, dB (peak-limited)"})
    shift_seconds: float = field(
        default=0.2, metadata={"help": "largest time shift either way, s; never cuts active speech"}
    )
    speed: tuple[float, float] = field(
        default=(0.9, 1.1), metadata={"help": "speed factor range (>1 faster, shorter); resampling changes pitch"}
    )
    noise_dirs: tuple[str, ...] = field(
        default=(), metadata={"help": "folders of noise audio; empty: coloured noise and babble from negatives"}
    )
    rir_dirs: tuple[str, ...] = field(default=(), metadata={"help": "folders of room impulse responses (audio)"})
    n_simulated_rooms: int = field(
        default=16, metadata={"help": "rooms simulated with pyroomacoustics and added to the RIR bank (0: none)"}
    )
    rt60_seconds: tuple[float, float] = field(
        default=(0.15, 0.8), metadata={"help": "reverberation time range of simulated rooms, s"}
    )

    def __post_init__(self) -> None:
        for name in ("snr_db", "gain_db", "speed", "rt60_seconds"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"AugmentSettings.{name}: low {low} > high {high}")
        for name in ("p_noise", "p_rir", "p_speed", "p_channel"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentSettings.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.speed[0] <= 0 or self.shift_seconds < 0 or self.n_simulated_rooms < 0:
            raise ValueError("AugmentSettings: speed must be > 0, shift_seconds and n_simulated_rooms >= 0")
        # YAML gives lists; keep the record hashable and immutable
        object.__setattr__(self, "noise_dirs", tuple(str(d) for d in self.noise_dirs))
        object.__setattr__(self, "rir_dirs", tuple(str(d) for d in self.rir_dirs))


# ---------------------------------------------------------------- levels and activity


def frame_power(audio: np.ndarray, frame: int = HOP_LENGTH) -> np.ndarray:
    """Mean power of consecutive non-overlapping frames: (n_samples,) -> (ceil(n_samples / frame),)."""
    n_frames = -(-len(audio) // frame)
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: len(audio)] = audio
    power = np.mean(padded.reshape(n_frames, frame) ** 2, axis=1)
    if len(audio) % frame:  # the last frame's mean over its real samples only
        power[-1] = np.mean(np.asarray(audio[(n_frames - 1) * frame :], dtype=np.float64) ** 2)
    return power


def active_mask(audio: np.ndarray, floor_db: float = ACTIVE_FLOOR_DB) -> np.ndarray:
    """Per 10 ms frame: True where power is within `floor_db` of the loudest frame. Silence gives all False."""
    power = frame_power(audio)
    peak = power.max(initial=0.0)
    if peak <= _EPS:
        return np.zeros(len(power), dtype=bool)
    return power >= peak * 10.0 ** (-floor_db / 10.0)


def active_power(audio: np.ndarray, floor_db: float = ACTIVE_FLOOR_DB) -> float:
    """Mean power over active frames (the SNR's speech power); 0.0 for silence."""
    mask = active_mask(audio, floor_db)
    return float(frame_power(audio)[mask].mean()) if mask.any() else 0.0


def speech_bounds(
    audio: np.ndarray,
    floor_db: float = ACTIVE_FLOOR_DB,
    margin_db: float = 10.0,
    max_gap_seconds: float = MAX_SPEECH_GAP_SECONDS,
) -> tuple[int, int]:
    """Energy endpoint of the loudest utterance: (start, end) sample of its first and past its last active frame.

    A frame is active `floor_db` below the loudest frame, raised to `margin_db` above the background for noisy
    recordings, but never above 20 dB below the peak. The background is the median frame when that lies at
    least BACKGROUND_GAP_DB below the peak (the word fills less than half the clip), else the 10th percentile
    frame (a clip cut close around the word, as TTS is). A room's background level wanders by 10 dB and
    more from one 10 ms frame to the next, so 10 dB above its 10th percentile is often still the room: on the
    1154 shared real wake-word recordings that rule made 109 utterances longer than the detector's 1.5 s
    window (the whole clip, the word's training window then placed on the room), the median 3; 2 of 700
    synthetic clips moved. The utterance is the
    run of active frames around the loudest one, bridging pauses up to `max_gap_seconds`: a click, a breath
    or a knock further away from it is not speech (in a real recording it moved the "end" of the word to the
    end of the clip, and the word's training window then held the room instead of the word). Silence: (0, n).
    """
    power = 10.0 * np.log10(frame_power(audio) + _EPS)
    peak = power.max(initial=-120.0)
    low, median = np.percentile(power, [10, 50])
    background = median if median <= peak - BACKGROUND_GAP_DB else low
    threshold = max(peak - floor_db, min(background + margin_db, peak - 20.0))
    active = np.flatnonzero(power >= threshold) if peak > -110.0 else np.array([], dtype=int)
    if active.size == 0:
        return 0, len(audio)
    max_gap_frames = max(1, round(max_gap_seconds * SAMPLE_RATE / HOP_LENGTH))
    runs = np.split(active, np.flatnonzero(np.diff(active) > max_gap_frames) + 1)
    loudest = int(np.argmax(power))
    run = next(r for r in runs if r[0] <= loudest <= r[-1])
    return int(run[0] * HOP_LENGTH), int(min(len(audio), (run[-1] + 1) * HOP_LENGTH))


def limit_peak(audio: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale the whole signal down (never clip) so |audio| <= peak; ratios such as SNR are kept."""
    top = float(np.max(np.abs(audio), initial=0.0))
    return (audio * (peak / top)).astype(np.float32) if top > peak else audio.astype(np.float32, copy=False)


# ---------------------------------------------------------------- the steps


def fit_length(noise: np.ndarray, n_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Tile or crop `noise` to n_samples, from a random offset when rng is given."""
    if len(noise) == 0:
        raise AudioError("noise: empty signal")
    reps = -(-(n_samples + len(noise)) // len(noise))
    start = int(rng.integers(len(noise))) if rng is not None else 0
    return np.tile(noise, reps)[start : start + n_samples]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that active-speech power / noise power = snr_db (see module docstring).

    speech: (n,) float32; noise: any length, tiled or cropped to n. Not peak-limited, so that
    `result - speech` is exactly the scaled noise; silent speech is returned unchanged.
    """
    noise = fit_length(np.asarray(noise, dtype=np.float64), len(speech))
    speech_power, noise_power = active_power(speech), float(np.mean(noise**2))
    if speech_power <= _EPS or noise_power <= _EPS:
        return np.asarray(speech, dtype=np.float32).copy()
    scale = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (speech + scale * noise).astype(np.float32)


def coloured_noise(n_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) Gaussian noise with unit RMS, (n_samples,)."""
    if colour not in COLOURS:
        raise ValueError(f"unknown noise colour {colour!r}; expected one of {COLOURS}")
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, d=1.0 / SAMPLE_RATE)
    exponent = COLOURS.index(colour) / 2.0  # amplitude ~ f^-0, f^-1/2, f^-1
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** exponent  # flat below 20 Hz: no DC blow-up
    noise = np.fft.irfft(spectrum, n=n_samples)
    return (noise / (np.sqrt(np.mean(noise**2)) + _EPS)).astype(np.float32)


def babble(
    n_samples: int, sources: Sequence[np.ndarray], rng: np.random.Generator, n_talkers: tuple[int, int] = (3, 6)
) -> np.ndarray:
    """Several speech clips summed at random offsets, each at unit active power; unit RMS, (n_samples,)."""
    out = np.zeros(n_samples, dtype=np.float64)
    for _ in range(int(rng.integers(n_talkers[0], n_talkers[1] + 1))):
        clip = np.asarray(sources[int(rng.integers(len(sources)))], dtype=np.float64)
        out += fit_length(clip, n_samples, rng) / np.sqrt(active_power(clip) + _EPS)
    return (out / (np.sqrt(np.mean(out**2)) + _EPS)).astype(np.float32)


def apply_rir(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Reverberate: convolve with a RIR whose direct path is at index 0 (see normalise_rir).

    Returns (n_samples + len(rir) - 1,): the tail rings on after the clip, the speech does not move.
    The output has the input's RMS over the input's span, peak-limited to 0.99.
    """
    wet = fftconvolve(np.asarray(audio, dtype=np.float64), np.asarray(rir, dtype=np.float64))
    level_in = np.sqrt(np.mean(np.square(audio, dtype=np.float64)))
    level_out = np.sqrt(np.mean(wet[: len(audio)] ** 2))
    return limit_peak(wet * (level_in / (level_out + _EPS)))


def normalise_rir(rir: np.ndarray, name: str = "<rir>") -> np.ndarray:
    """Drop the delay before the direct path (its peak, less 1 ms) and scale to unit energy."""
    rir = np.asarray(rir, dtype=np.float64)
    if rir.size == 0 or not np.all(np.isfinite(rir)) or not np.any(rir):
        raise AudioError(f"{name}: not a usable impulse response (empty, silent or non-finite)")
    start = max(0, int(np.argmax(np.abs(rir))) - SAMPLE_RATE // 1000)
    rir = rir[start:]
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation by resampling (tempo and pitch change together): length becomes n / factor."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    return resample(np.asarray(audio, dtype=np.float32), round(SAMPLE_RATE * factor), SAMPLE_RATE)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by gain_db, then peak-limit to 0.99 (a louder gain cannot clip)."""
    return limit_peak(np.asarray(audio, dtype=np.float64) * 10.0 ** (gain_db / 20.0))


def time_shift(audio: np.ndarray, shift_samples: int) -> np.ndarray:
    """Delay (>0) or advance (<0) the content with zero fill, same length, clamped to the silence at the
    end it moves towards so active speech is never cut."""
    start, end = speech_bounds(audio)
    shift = int(np.clip(shift_samples, -start, len(audio) - end))
    out = np.zeros_like(audio)
    if shift >= 0:
        out[shift:] = audio[: len(audio) - shift]
    else:
        out[:shift] = audio[-shift:]
    return out


# ---------------------------------------------------------------- banks


def _audio_files(folders: Sequence[str]) -> list[Path]:
    files = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise AudioError(f"{folder}: not a folder (named in augment settings)")
        files += sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    return files


class NoiseBank:
    """Background noise to draw from: noise files (read lazily, a few kept in memory), or, when there are none,
    coloured noise and babble made from `babble_sources` (negative speech, (n,) arrays)."""

    def __init__(self, files: Sequence[Path] = (), babble_sources: Sequence[np.ndarray] = (), cache_size: int = 32):
        self.files = list(files)
        self.babble_sources = [np.asarray(s, dtype=np.float32) for s in babble_sources if len(s)]
        self._cache: dict[Path, np.ndarray] = {}
        self._cache_size = cache_size

    def kinds(self) -> list[str]:
        if self.files:
            return ["file"]
        return [*COLOURS, *(["babble"] if self.babble_sources else [])]

    def _load(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[path] = load_audio(path)
        return self._cache[path]

    def sample(self, n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(noise (n_samples,), description) e.g. 'pink', 'babble', 'file:rain.wav'."""
        kind = self.kinds()[int(rng.integers(len(self.kinds())))]
        if kind == "file":
            path = self.files[int(rng.integers(len(self.files)))]
            return fit_length(self._load(path), n_samples, rng), f"file:{path.name}"
        if kind == "babble":
            return babble(n_samples, self.babble_sources, rng), "babble"
        return coloured_noise(n_samples, kind, rng), kind


def build_noise_bank(settings: AugmentSettings, babble_sources: Sequence[np.ndarray] = ()) -> NoiseBank:
    """Noise files under settings.noise_dirs; unreadable ones are skipped with a warning naming them."""
    files, bad = [], []
    for path in _audio_files(settings.noise_dirs):
        try:
            sf.info(path)
            files.append(path)
        except (sf.LibsndfileError, RuntimeError) as error:
            bad.append(f"{path} ({error})")
    if bad:
        log.warning("skipping %d unreadable noise file(s): %s", len(bad), "; ".join(bad[:5]))
    if settings.noise_dirs and not files:
        raise AudioError(f"{', '.join(settings.noise_dirs)}: no readable noise audio")
    return NoiseBank(files, babble_sources)


@dataclass
class RirBank:
    """Room impulse responses, each normalised (direct path first, unit energy), with a name per RIR."""

    rirs: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rirs)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        index = int(rng.integers(len(self.rirs)))
        return self.rirs[index], self.names[index]


def simulate_rir(rng: np.random.Generator, rt60_seconds: tuple[float, float] = (0.15, 0.8)) -> np.ndarray:
    """One ShoeBox room (pyroomacoustics image sources): random size, RT60 -> wall absorption, random source
    and microphone at least 0.5 m from the walls. Returns the raw RIR, (n_taps,) at 16 kHz."""
    import pyroomacoustics as pra

    dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
    absorption, max_order = pra.inverse_sabine(float(rng.uniform(*rt60_seconds)), dims)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 40))
    room.add_source(rng.uniform(0.5, dims - 0.5))
    room.add_microphone(rng.uniform(0.5, dims - 0.5))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)


def build_rir_bank(settings: AugmentSettings, seed: int = 0) -> RirBank:
    """RIR files under settings.rir_dirs plus settings.n_simulated_rooms simulated rooms, each computed once."""
    bank = RirBank()
    for path in _audio_files(settings.rir_dirs):
        bank.rirs.append(normalise_rir(load_audio(path), str(path)))
        bank.names.append(f"file:{path.name}")
    rng = np.random.default_rng([seed, 0x5EED])
    for index in range(settings.n_simulated_rooms):
        bank.rirs.append(normalise_rir(simulate_rir(rng, settings.rt60_seconds), f"simulated room {index}"))
        bank.names.append(f"room:{index}")
    return bank


# ---------------------------------------------------------------- the chain


def augment_audio(
    audio: np.ndarray,
    rng: np.random.Generator,
    settings: AugmentSettings,
    noise_bank: NoiseBank | None = None,
    rir_bank: RirBank | None = None,
    *,
    steps: Sequence[str] = STEPS,
    applied: dict[str, Any] | None = None,
) -> np.ndarray:
    """One random augmentation of (n_samples,) float32 audio; returns a new array (speed and RIR change its
    length). `steps` selects a subset, always run in STEPS order; a step without a bank (noise, rir) is
    skipped. The values drawn are written into `applied` (e.g. {"speed": 1.04, "snr_db": 7.5, ...})."""
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown augmentation step(s) {sorted(unknown)}; expected some of {STEPS}")
    applied = {} if applied is None else applied
    out = np.asarray(audio, dtype=np.float32)
    if "speed" in steps and rng.random() < settings.p_speed:
        applied["speed"] = round(float(rng.uniform(*settings.speed)), 4)
        out = change_speed(out, applied["speed"])
    if "rir" in steps and rir_bank is not None and len(rir_bank) and rng.random() < settings.p_rir:
        rir, applied["rir"] = rir_bank.sample(rng)
        out = apply_rir(out, rir)
    if "shift" in steps and settings.shift_seconds > 0:
        shift = int(rng.uniform(-settings.shift_seconds, settings.shift_seconds) * SAMPLE_RATE)
        applied["shift_seconds"] = shift / SAMPLE_RATE
        out = time_shift(out, shift)
    if "noise" in steps and noise_bank is not None and rng.random() < settings.p_noise:
        noise, applied["noise"] = noise_bank.sample(len(out), rng)
        applied["snr_db"] = round(float(rng.uniform(*settings.snr_db)), 3)
        out = limit_peak(mix_at_snr(out, noise, applied["snr_db"]))
    if "channel" in steps and rng.random() < settings.p_channel:
        out = recording_channel(out, rng, applied)
    if "gain" in steps:
        applied["gain_db"] = round(float(rng.uniform(*settings.gain_db)), 3)
        out = apply_gain(out, applied["gain_db"])
    return out


def peaking_filter(centre_hz: float, gain_db: float, q: float) -> np.ndarray:
    """One peaking-EQ biquad (RBJ audio-EQ cookbook) as second-order sections, shape (1, 6)."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * centre_hz / SAMPLE_RATE
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    return np.array([[*(np.array(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]]])


def mu_law_round_trip(audio: np.ndarray, bits: int = 8) -> np.ndarray:
    """Telephone-style companding: mu-law encode to `bits`, decode (the quantisation noise stays)."""
    mu = 2**bits - 1
    peak = max(float(np.max(np.abs(audio))), _EPS)
    encoded = np.sign(audio) * np.log1p(mu * np.abs(audio / peak)) / np.log1p(mu)
    quantised = np.round((encoded + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu * peak).astype(np.float32)


def recording_channel(audio: np.ndarray, rng: np.random.Generator, applied: dict[str, Any]) -> np.ndarray:
    """A random microphone and line: two resonances or dips (+-8 dB, 150 Hz-6 kHz), a high-pass (50-300 Hz),
    often a low-pass (3.4-7.5 kHz: phone and cheap-mic bandwidths), sometimes mu-law companding.

    Real recordings all carry some such colouring and TTS output none; without it "coloured" would be a
    cue for "recorded by the user", and the user's recordings are mostly positives.
    """
    from scipy.signal import butter, sosfilt

    bands = [(float(rng.uniform(150, 6000)), float(rng.uniform(-8, 8)), float(rng.uniform(0.7, 2.5))) for _ in range(2)]
    sections = [peaking_filter(*band) for band in bands]
    highpass = float(rng.uniform(50, 300))
    sections.append(butter(2, highpass, "highpass", fs=SAMPLE_RATE, output="sos"))
    applied["channel"] = {"eq": [[round(v, 1) for v in band] for band in bands], "highpass_hz": round(highpass)}
    if rng.random() < 0.6:
        applied["channel"]["lowpass_hz"] = round(float(rng.uniform(3400, 7500)))
        sections.append(butter(4, applied["channel"]["lowpass_hz"], "lowpass", fs=SAMPLE_RATE, output="sos"))
    out = sosfilt(np.concatenate(sections), audio).astype(np.float32)
    if rng.random() < 0.2:
        applied["channel"]["mu_law"] = True
        out = mu_law_round_trip(out)
    return limit_peak(out)


def clip_rng(seed: int, clip_id: str, copy: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, clip id, copy number): order- and process-independent."""
    return np.random.default_rng([seed, zlib.crc32(clip_id.encode()), copy])


def augment_dataset(
    src: DataSet,
    dst: DataSet,
    n_copies: int,
    settings: AugmentSettings,
    seed: int = 0,
    clips: Sequence[Clip] | None = None,
) -> list[Clip]:
    """Write `n_copies` augmented versions of each clip of `src` (or of `clips`, records of src) into `dst`.

    New clips keep labels, speaker, text and meta (so a session group stays together), with source
    "augmented" and meta["parent"] / meta["parent_dataset"] / meta["augment"] (the steps and values applied).
    Babble is made from src's clips that are negative for every word they are labelled for. The source audio
    is only read. All new records go into dst's manifest in one atomic update; returns them.
    """
    clips = list(src.clips() if clips is None else clips)
    negatives = [c for c in clips if c.labels and not any(c.labels.values())][:64]
    noise_bank = build_noise_bank(settings, [src.load(c) for c in negatives])
    rir_bank = build_rir_bank(settings, seed)
    made: list[Clip] = []
    with dst.writing() as writer:  # a failed run leaves no orphan audio behind
        for clip in clips:
            audio = src.load(clip)
            for copy in range(n_copies):
                rng = clip_rng(seed, clip.id, copy)
                made.append(_augmented_copy(writer, clip, audio, rng, settings, noise_bank, rir_bank, str(src.root)))
        return dst.add_clips(made)


def _augmented_copy(
    dst: ClipWriter,
    clip: Clip,
    audio: np.ndarray,
    rng: np.random.Generator,
    settings: AugmentSettings,
    noise_bank: NoiseBank,
    rir_bank: RirBank,
    parent_dataset: str,
) -> Clip:
    applied: dict[str, Any] = {}
    out = augment_audio(audio, rng, settings, noise_bank, rir_bank, applied=applied)
    meta = {**clip.meta, "parent": clip.id, "parent_dataset": parent_dataset, "augment": applied}
    return dst.make_clip(
        out, clip.labels, "augmented", speaker=clip.speaker, text=clip.text, meta=meta, clip_id=new_clip_id("aug-")
    )
