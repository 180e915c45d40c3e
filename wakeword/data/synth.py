"""Synthetic training data: ASR quality control and `build_synthetic_dataset`.

Speech comes from the TTS backends of wakeword.data.tts. The builder renders in worker processes, chunk by
chunk with a seed per chunk (wakeword.data.render), because espeak-ng's global state makes a clip depend on
everything the process rendered before it.

Quality control: every positive is transcribed, in batches (Whisper tiny.en via wakeword.encoders.whisper when
that module is there, else PocketSphinx) and dropped unless the transcript says the wake word (Lexicon.says:
spelling or pronunciation). `build_synthetic_dataset` writes positives, confusable and generic negatives.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm.auto import tqdm

from wakeword.audio import SAMPLE_RATE
from wakeword.data.clips import ClipWriter, DataSet, normalize_word
from wakeword.data.lexicon import COMMON_WORDS, Lexicon, load_lexicon, words_of
from wakeword.data.tts import EspeakBackend, TTSBackend, Voice, VoiceSettings
from wakeword.timing import timed

log = logging.getLogger(__name__)

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
        self.writer = ClipWriter(self.dataset)
        self.id_base, self.n_written = f"{wake_word}|{settings.seed}|{len(self.dataset)}", 0
        self.renderer = Renderer(backend, settings.workers)
        self.bar = tqdm(total=n_total, disable=not progress, desc=f"synth {wake_word!r}")

    def write(self, audio: np.ndarray, label: int, voice: VoiceSettings, text: str, meta: dict) -> None:
        clip_id = "synth-" + hashlib.sha256(f"{self.id_base}|{self.n_written}".encode()).hexdigest()[:16]
        self.n_written += 1
        clip = self.writer.make_clip(audio, {self.wake_word: label}, "synth", speaker=voice.voice.id, text=text,
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
    except BaseException:
        try:
            build.close()  # the clips written before the failure are kept
        finally:
            build.writer.remove_unrecorded()  # and no audio the manifest does not name is left
        raise
    build.close()
    report.n_voice_settings, report.n_voices = len(build.used), len({v.voice.id for v in build.used})
    return report
