"""Long negative audio: hours of speech, TV or room sound that never says the wake word.

It serves three purposes, and is cut into SEGMENT_SECONDS clips (a data set in the user cache) for all of them:
- training: every segment gives windows labelled "not the wake word" (`WakeWordDataset` treats a long
  negative clip as several windows);
- mining rounds: the trained detector scores every hop of the training segments; the windows it fires on
  at a low threshold become weighted hard negatives for the next round;
- calibration: every CALIBRATION_EVERY-th segment is kept out of training and mining, and the thresholds
  are set on it (with the validation negatives), so an FA/h target rests on as much audio as there is.

Without real long audio, calibration uses a synthetic long-form corpus (`build_synthetic_longform`):
espeak-ng sentences from hundreds of voices with pauses, background noise and random recording channels;
word-independent, so it is made and encoded once per machine, and segments whose text says a wake word are
left out when calibrating that word.

Scoring a segment streams it the way `StreamingDetector` does (window ending at each hop, zero left-pad).
With a frozen encoder the encoder output of every hop is cached on disk (float16), so mining rounds and
calibration of a retrained head cost a pass of the head only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from wakeword.audio import SAMPLE_RATE, load_audio, seconds_to_samples
from wakeword.data.augment import AugmentSettings, build_noise_bank, mix_at_snr, recording_channel
from wakeword.data.clips import AUDIO_SUFFIXES, Clip, DataSet
from wakeword.models.base import Detector

SEGMENT_SECONDS = 30.0  # one clip of long audio: long enough for many windows, short enough to shuffle
CALIBRATION_EVERY = 4  # every 4th segment (25%) calibrates and never trains
COMPLETE_MARKER = ".complete"  # written last into a cached data set's folder: the build finished
LONGFORM_VERSION = 2  # bump when the synthetic long-form recipe changes: its cache key includes this
SENTENCES_PER_DRAW = 12  # sentences rendered for a segment at a time: ~40 s of speech, one draw fills most
SENTENCE_GAP_SECONDS = (0.2, 1.5)  # pauses between synthetic sentences
LONGFORM_SNR_DB = (5.0, 30.0)  # speech over background noise in the synthetic long form
SCORE_BATCH = 64  # windows per encoder / head call while scoring long audio
FRAME_CACHE_BYTES = 8 * 2**30  # cached encoder frames kept on disk, least recently used removed first


def _cache_root() -> Path:
    from wakeword.encoders.whisper import cache_dir

    return cache_dir()


def _key(parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:20]


def long_audio_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Audio files named, or found under named folders (recursively), sorted; a missing path is an error."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder of negative audio")
    if not files:
        raise FileNotFoundError(f"{', '.join(map(str, paths))}: no audio files for negative audio")
    return files


def segment_long_audio(paths: Sequence[str | os.PathLike]) -> DataSet:
    """Cut long audio into SEGMENT_SECONDS clips (a data set in the user cache, made once per set of files).

    Each clip's meta records its source file, start time and part ("train" or "calibration").
    """
    files = long_audio_files(paths)
    stamp = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    root = _cache_root() / "negative-audio" / _key([stamp, SEGMENT_SECONDS, CALIBRATION_EVERY])
    return _built_once(root, lambda dataset: _cut_segments(files, dataset))


def _cut_segments(files: Sequence[Path], dataset: DataSet) -> None:
    step, n = seconds_to_samples(SEGMENT_SECONDS), 0
    for path in tqdm(files, desc="cutting negative audio", leave=False):
        audio, clips = load_audio(path), []
        for start in range(0, len(audio), step):
            piece = audio[start : start + step]
            if len(piece) < step // 10:  # a few seconds at the end of a file: not worth a clip
                continue
            part = "calibration" if n % CALIBRATION_EVERY == CALIBRATION_EVERY - 1 else "train"
            meta = {"source_file": path.name, "start_seconds": start / SAMPLE_RATE, "part": part}
            clips.append(dataset.make_clip(piece, {}, "corpus", meta=meta, clip_id=f"seg{n:06d}"))
            n += 1
        dataset.add_clips(clips)


def _built_once(root: Path, build: Callable[[DataSet], None]) -> DataSet:
    """The cached data set at `root`, built by `build` into a staging folder that is renamed into place
    only when complete: an interrupted build is never taken for a finished one (one was: a 30-minute
    calibration set that held 18.5 minutes). Folders from before COMPLETE_MARKER are rebuilt; their files
    are made the same way, so the encoder-frame cache (keyed by file content) still holds their frames."""
    if (root / COMPLETE_MARKER).is_file():
        return DataSet(root)
    staging = root.with_name(f".{root.name}.{os.getpid()}.building")
    shutil.rmtree(staging, ignore_errors=True)
    build(DataSet.create(staging))
    (staging / COMPLETE_MARKER).write_text("", encoding="utf-8")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(staging, root)
    return DataSet(root)


def build_synthetic_longform(minutes: float, seed: int = 0, noise_dirs: Sequence[str] = ()) -> DataSet:
    """At least `minutes` of synthetic long-form speech in noise, as SEGMENT_SECONDS clips (cached).

    Sentences of common words from espeak-ng voices drawn like the training data, with pauses; each
    segment is mixed with background noise (noise_dirs, else coloured noise and babble) at a random SNR
    and passed through a random recording channel. A clip's text lists its sentences, joined by " | ".
    """
    parts = [LONGFORM_VERSION, float(minutes), seed, sorted(map(str, noise_dirs)), SEGMENT_SECONDS]
    root = _cache_root() / "longform" / _key(parts)
    return _built_once(root, lambda dataset: _synthesise_longform(dataset, minutes, seed, noise_dirs))


def _synthesise_longform(dataset: DataSet, minutes: float, seed: int, noise_dirs: Sequence[str]) -> None:
    """Every segment draws its sentences, voices and pauses from its own generator and its noise, SNR and
    channel from another, and the speech is rendered by wakeword.data.render (seeded per chunk, on both
    cores): the corpus depends on `seed` alone, not on the order of work or on what espeak-ng said before."""
    from wakeword.data.lexicon import load_lexicon
    from wakeword.data.render import Renderer
    from wakeword.data.tts import EspeakBackend

    n_segments = max(1, int(np.ceil(minutes * 60 / SEGMENT_SECONDS)))
    speech_rngs = [np.random.default_rng([seed, 0x10F0, i]) for i in range(n_segments)]
    backend, lexicon = EspeakBackend(), load_lexicon()
    sentences: list[list[tuple[np.ndarray, str]]] = [[] for _ in range(n_segments)]
    renderer, todo, round_ = Renderer(backend), list(range(n_segments)), 0
    progress = tqdm(total=n_segments, desc="synthesising long-form negatives", leave=False)
    try:
        while todo:  # a segment short of SEGMENT_SECONDS draws SENTENCES_PER_DRAW more (rarely needed)
            jobs, owners = _sentence_jobs(todo, speech_rngs, backend, lexicon)
            for audio, (i, gap, text) in zip(renderer.render(jobs, seed, 0x10F0 + round_), owners, strict=True):
                sentences[i].append((np.concatenate([np.zeros(gap, np.float32), audio]), text))
            full = [i for i in todo if sum(len(a) for a, _ in sentences[i]) >= seconds_to_samples(SEGMENT_SECONDS)]
            progress.update(len(full))
            todo, round_ = [i for i in todo if i not in full], round_ + 1
    finally:
        renderer.close()
        progress.close()
    noise = build_noise_bank(AugmentSettings(noise_dirs=tuple(noise_dirs)))
    dataset.add_clips([_longform_clip(dataset, i, sentences[i], noise, seed) for i in range(n_segments)])


def _sentence_jobs(todo: Sequence[int], rngs: Sequence[np.random.Generator], backend, lexicon) -> tuple[list, list]:
    """SENTENCES_PER_DRAW (text, voice) render jobs per segment in `todo`, and (segment, pause samples, text)
    for each."""
    from wakeword.data.synth import SynthSettings, draw_voice_settings

    jobs, owners = [], []
    for i in todo:
        for _ in range(SENTENCES_PER_DRAW):
            text = lexicon.generic_texts(1, None, seed=int(rngs[i].integers(2**31)))[0]
            voice = draw_voice_settings(backend.voices(), 1, rngs[i], SynthSettings())[0]
            jobs.append((text, voice))
            owners.append((i, seconds_to_samples(rngs[i].uniform(*SENTENCE_GAP_SECONDS)), text))
    return jobs, owners


def _longform_clip(dataset: DataSet, index: int, sentences: list[tuple[np.ndarray, str]], noise, seed: int) -> Clip:
    """One segment: its pauses and sentences cut to SEGMENT_SECONDS (the sentences it holds any of listed),
    mixed with background noise and passed through a random recording channel."""
    step, texts, length = seconds_to_samples(SEGMENT_SECONDS), [], 0
    for audio, text in sentences:
        if length >= step:
            break
        texts.append(text)
        length += len(audio)
    audio = np.concatenate([a for a, _ in sentences[: len(texts)]])[:step]
    rng = np.random.default_rng([seed, 0x10F0, index, 1])
    background, kind = noise.sample(len(audio), rng)
    audio = recording_channel(mix_at_snr(audio, background, float(rng.uniform(*LONGFORM_SNR_DB))), rng, {})
    meta = {"noise": kind, "part": "calibration"}
    return dataset.make_clip(audio, {}, "synth", text=" | ".join(texts), meta=meta, clip_id=f"long{index:05d}")


def says_any(clip: Clip, words: Sequence[str]) -> bool:
    """Whether a synthetic long-form clip's text says any of the wake words (by pronunciation)."""
    from wakeword.data.lexicon import load_lexicon

    lexicon = load_lexicon()
    return any(lexicon.says(sentence, word) for sentence in clip.text.split(" | ") for word in words)


def stream_windows(audio: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """The windows a StreamingDetector scores over `audio` (n_samples,): (n_hops, window_samples), a view.

    Hop k (1-based) scores the window ending k hops into the stream, left-padded with zeros; the last
    partial hop is zero-padded, so there are ceil(n_samples / hop_samples) windows."""
    n_hops = -(-len(audio) // hop_samples)
    padded = np.zeros(window_samples + n_hops * hop_samples, np.float32)
    padded[window_samples : window_samples + len(audio)] = audio
    return np.lib.stride_tricks.sliding_window_view(padded, window_samples)[hop_samples::hop_samples][:n_hops]


def _encoder_identity(model: Detector) -> dict:
    encoder = dict(model.config.encoder)
    if Path(str(encoder.get("name", ""))).exists():  # a local folder's weights may change under one name
        encoder["mtime"] = os.stat(encoder["name"]).st_mtime_ns
    return encoder


def cached_frames(model: Detector, path: Path, padding: tuple[int, int] = (0, 0), int8: bool = False) -> np.ndarray:
    """Frozen-encoder frames of every streaming window of a file: (n_hops, n_frames, dim) float16, from
    the disk cache when present (a memory map), else encoded now and cached.

    padding: zero samples added (before, after) the file's audio before streaming it (clip scoring pads).
    int8: frames of the encoder's int8 graph (see `int8_encoder`; cached apart from the float32 frames)."""
    config = model.config
    cache = _frames_cache(model, path, padding, int8)
    if cache.is_file():
        try:
            os.utime(cache)
            return np.load(cache, mmap_mode="r")
        except (OSError, ValueError):  # a damaged cache file is only a cache miss
            cache.unlink(missing_ok=True)
    audio = np.pad(load_audio(path), padding)
    encode = int8_encoder(model) if int8 else model.encode
    out = encode_windows(model, stream_windows(audio, config.window_samples, config.hop_samples), encode)
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npy")
    np.save(staging, out)
    os.replace(staging, cache)
    _trim_cache(cache.parent)
    return out


def _frames_cache(model: Detector, path: Path, padding: tuple[int, int] = (0, 0), int8: bool = False) -> Path:
    config = model.config
    content = hashlib.sha256(path.read_bytes()).hexdigest()  # by content: a moved or copied file stays cached
    parts = [_encoder_identity(model), content, config.window_seconds, config.hop_seconds, list(padding)]
    return _cache_root() / "frames" / f"{_key([*parts, 'int8'] if int8 else parts)}.npy"


def int8_encoder(model: Detector) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """audio (batch, window_samples) -> frames through the frozen encoder's int8 graph
    (wakeword.encoders.onnx_frames.int8_frames), or None where there is none (any other encoder, or no
    onnxruntime). Its frames are close to the float32 ones, not equal: for first passes only."""
    from wakeword.encoders.onnx_frames import int8_frames

    encoder = getattr(model, "encoder", None)
    if not getattr(model, "encoder_frozen", False) or not hasattr(encoder, "_top_modules"):  # whisper only
        return None
    runner = int8_frames(encoder, model.config.window_samples)
    return None if runner is None else (lambda audio: torch.from_numpy(runner(audio.numpy())))


def encode_windows(
    model: Detector, windows: np.ndarray, encode: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> np.ndarray:
    """Frozen-encoder frames (n, n_frames, dim) float16 of windows (n, window_samples), SCORE_BATCH per call
    (`encode` replaces model.encode, e.g. with `int8_encoder`).

    Windows of pure digital silence (a clip's left padding: a window and more of it) are encoded once: a
    window's frames do not depend on the other windows of its batch (beyond float rounding)."""
    encode = encode or model.encode
    sounding = np.flatnonzero(np.any(windows != 0, axis=1))
    frames = [encode(torch.from_numpy(np.array(windows[sounding[i : i + SCORE_BATCH]]))).half().numpy()
              for i in range(0, len(sounding), SCORE_BATCH)]  # fmt: skip
    if len(sounding) == len(windows):
        return np.concatenate(frames)
    silence = encode(torch.zeros(1, windows.shape[1])).half().numpy()
    out = np.empty((len(windows), *silence.shape[1:]), np.float16)
    out[:] = silence
    if frames:
        out[sounding] = np.concatenate(frames)
    return out


def _trim_cache(folder: Path) -> None:
    files = sorted(folder.glob("*.np[yz]"), key=lambda f: f.stat().st_mtime, reverse=True)
    total = 0
    for file in files:
        total += file.stat().st_size
        if total > FRAME_CACHE_BYTES:
            file.unlink(missing_ok=True)


@torch.no_grad()
def score_long_clip(model: Detector, path: Path, padding: tuple[int, int] = (0, 0), int8: bool = False) -> np.ndarray:
    """Logits (n_hops, n_words) of every streaming hop of one file (see stream_windows), after adding
    `padding` zero samples (before, after).

    A frozen encoder's frames come from the disk cache (equal to streaming up to float16 rounding of the
    frames); any other model streams the audio through `score_array`. int8: from the encoder's int8 frames
    (approximate; the caller checks with `score_hops` where it matters)."""
    model.eval()
    if getattr(model, "encoder_frozen", False) and hasattr(model, "forward_features"):
        return _head_logits(model, cached_frames(model, path, padding, int8=int8))
    from wakeword.stream import score_array

    return score_array(model, np.pad(load_audio(path), padding))[1].astype(np.float64)


def _head_logits(model: Detector, frames: np.ndarray) -> np.ndarray:
    out = [model.forward_features(torch.from_numpy(np.asarray(frames[i : i + SCORE_BATCH], np.float32)))
           for i in range(0, len(frames), SCORE_BATCH)]  # fmt: skip
    return torch.cat(out).double().numpy() if out else np.zeros((0, len(model.config.wake_words)))


@torch.no_grad()
def score_hops(model: Detector, path: Path, hops: np.ndarray) -> np.ndarray:
    """Logits (len(hops), n_words) of the given streaming hops (0-based rows of score_long_clip's track) of a
    file, from float32 frames: the same values as those rows of score_long_clip (float16 frames)."""
    return _head_logits(model.eval(), exact_frames(model, path, np.asarray(hops)))


def exact_frames(model: Detector, path: Path, hops: np.ndarray) -> np.ndarray:
    """float16 frames (len(hops), n_frames, dim) of some streaming hops of a file, encoded in float32: from the
    file's whole frame cache if there is one, else from a cache of the hops encoded so far (`.hops.npz`), so
    that calibrating a retrained head on the same long audio encodes only hops it has not encoded before."""
    whole = _frames_cache(model, path)
    try:
        return np.asarray(np.load(whole, mmap_mode="r")[hops])
    except (OSError, ValueError):  # no whole cache (or a damaged one): the hops cache
        pass
    part = whole.with_suffix(".hops.npz")
    known, frames = _load_hops(part)
    missing = np.setdiff1d(hops, known)
    if missing.size:
        config = model.config
        windows = stream_windows(load_audio(path), config.window_samples, config.hop_samples)
        new = encode_windows(model, np.asarray(windows[missing]))
        known, frames = np.concatenate([known, missing]), (np.concatenate([frames, new]) if len(frames) else new)
        order = np.argsort(known)
        known, frames = known[order], frames[order]
        staging = part.with_name(f".{part.stem}.{os.getpid()}.tmp.npz")
        part.parent.mkdir(parents=True, exist_ok=True)
        np.savez(staging, hops=known, frames=frames)
        os.replace(staging, part)
        _trim_cache(part.parent)
    return frames[np.searchsorted(known, hops)]


def _load_hops(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(hops, frames) of a `.hops.npz` cache, or empty arrays (a damaged file is only a cache miss)."""
    try:
        with np.load(path) as data:
            os.utime(path)
            return data["hops"], data["frames"]
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)
        return np.zeros(0, np.int64), np.zeros(0, np.float16)


def mine_windows(
    model: Detector, pairs: Sequence[tuple[Clip, Path]], threshold: float, max_windows: int, refractory_seconds: float
) -> tuple[np.ndarray, list[dict]]:
    """The windows of long negative audio that the detector fires on at `threshold` (a low logit).

    Every activation (rising edge, refractory as in wakeword.metrics) of any word gives the window at its
    peak; the `max_windows` highest-scoring are returned as (n, window_samples) float32 audio with a
    record each (clip id, time_seconds, word, score), highest first.
    """
    from wakeword.metrics import detection_hops

    config, found = model.config, []
    span = max(1, round(config.window_seconds / config.hop_seconds))  # an activation peaks within a window
    for clip, root in tqdm(pairs, desc="mining negative audio", leave=False):
        track = score_long_clip(model, root / clip.path)
        for k, word in enumerate(config.wake_words):
            for onset in detection_hops(track[:, k], threshold, config.hop_seconds, refractory_seconds).tolist():
                peak = onset + int(np.argmax(track[onset : onset + span, k]))
                found.append((float(track[peak, k]), clip, root, peak, word))
    found.sort(key=lambda item: -item[0])
    windows, records = [], []
    for score, clip, root, row, word in found[:max_windows]:
        audio = load_audio(root / clip.path)
        windows.append(np.array(stream_windows(audio, config.window_samples, config.hop_samples)[row]))
        records.append({"clip": clip.id, "time_seconds": round((row + 1) * config.hop_seconds, 3),
                        "word": word, "score": round(score, 3)})  # fmt: skip
    shape = (len(windows), config.window_samples)
    return (np.stack(windows) if windows else np.zeros(shape, np.float32)), records
