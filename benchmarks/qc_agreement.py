"""Batched Whisper QC against the per-clip transcriber it replaced: decisions, context length, speed.

    python benchmarks/qc_agreement.py [--words "hey computer" jarvis] [--n 200] [--contexts 3 5 10]
    python benchmarks/qc_agreement.py --n 150 --onnx-vs-torch   # the QC's encoder: onnxruntime vs torch

Renders --n espeak-ng attempts of each wake word (the voice settings a default `wakeword synth` draws), then
transcribes every clip (1) with the old path, kept here as the reference: each clip alone on a 10 s padded
context, greedy decoding one token at a time; (2) with `WhisperTranscriber.transcribe_batch` at each context
length. A clip is accepted when `Lexicon.says(transcript, word)`, as in `build_synthetic_dataset`. Writes the
agreement of every context with the reference, every disagreement with both transcripts, and the seconds per
clip of each path to benchmarks/results/qc_agreement.json. The machine (2 cores) may have been shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from wakeword.audio import SAMPLE_RATE
from wakeword.data.lexicon import load_lexicon
from wakeword.data.synth import SynthSettings, draw_voice_settings
from wakeword.data.tts import EspeakBackend
from wakeword.encoders.whisper import WhisperTranscriber

RESULTS = Path(__file__).parent / "results" / "qc_agreement.json"


class PerClipReference:
    """The transcriber before batching (commit 7b580fc): one clip, 10 s padded context, token-by-token greedy."""

    def __init__(self, batched: WhisperTranscriber, context_seconds: float = 10.0) -> None:
        self.t, self.n_samples = batched, int(context_seconds * SAMPLE_RATE)

    @torch.no_grad()
    def __call__(self, audio: np.ndarray) -> str:
        from transformers.modeling_outputs import BaseModelOutput

        t = self.t
        padded = np.zeros(self.n_samples, np.float32)
        padded[: min(len(audio), self.n_samples)] = audio[: self.n_samples]
        encoded = BaseModelOutput(last_hidden_state=t.encoder(torch.from_numpy(padded)[None]))
        tokens, step, cache = list(t.prompt), torch.tensor([t.prompt]), None
        for index in range(t.max_tokens):
            logits, cache = t._step(encoded, step, cache)
            logits = logits[0]
            logits[t.suppress] = -torch.inf
            if index == 0:
                logits[t.suppress_first] = -torch.inf
            token = int(logits.argmax())
            if token == t.end:
                break
            tokens.append(token)
            step = torch.tensor([[token]])
        return t.tokenizer.decode(tokens[len(t.prompt) :], skip_special_tokens=True).strip()


def render(word: str, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    backend = EspeakBackend()
    voices = draw_voice_settings(backend.voices(), n, np.random.default_rng(seed), SynthSettings())
    return [(v.voice.id, backend.synthesize(word, v)) for v in voices]


def timed(function, *args) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def compare(words: list[str], clips: dict[str, list], reference: dict[str, list[str]], transcripts: dict) -> dict:
    lexicon, n_clips = load_lexicon(), sum(len(c) for c in clips.values())
    agree, disagreements = 0, []
    for word in words:
        rows = zip(clips[word], reference[word], transcripts[word], strict=True)
        for index, ((voice, _), ref, new) in enumerate(rows):
            before, after = lexicon.says(ref, word), lexicon.says(new, word)
            agree += before == after
            if before != after:
                disagreements.append({"word": word, "clip": index, "voice": voice, "reference": ref,
                                      "reference_accepts": before, "batched": new,
                                      "batched_accepts": after})  # fmt: skip
    n_same_text = sum(r == t for w in words for r, t in zip(reference[w], transcripts[w], strict=True))
    return {"n_clips": n_clips, "agreement": round(agree / n_clips, 4), "n_disagreements": len(disagreements),
            "identical_transcripts": round(n_same_text / n_clips, 4), "disagreements": disagreements}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", nargs="+", default=["hey computer", "jarvis"])
    parser.add_argument("--n", type=int, default=200, help="clips per word")
    parser.add_argument("--contexts", nargs="+", type=float, default=[3.0, 5.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--onnx-vs-torch", action="store_true",
                        help="only compare the batched QC with its encoder in onnxruntime against the same with "
                        "torch (10 s context); stored under 'onnx_vs_torch' in the results file")  # fmt: skip
    args = parser.parse_args()
    clips = {w: render(w, args.n, args.seed) for w in args.words}
    if args.onnx_vs_torch:
        return onnx_vs_torch(args, clips)
    n_clips = sum(len(c) for c in clips.values())
    batched = WhisperTranscriber()
    reference_fn = PerClipReference(batched)
    reference_fn(clips[args.words[0]][0][1])  # warm-up outside the clock
    reference, seconds = {}, 0.0
    for word in args.words:
        reference[word], took = timed(lambda w=word: [reference_fn(a) for _, a in clips[w]])
        seconds += took
    lexicon = load_lexicon()
    acceptance = {w: round(float(np.mean([lexicon.says(t, w) for t in reference[w]])), 3) for w in args.words}
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "note": "2 cores, may have been shared"}
    reference_entry = {"path": "per clip, 10 s context, token-by-token greedy (7b580fc)",
                       "seconds_per_clip": round(seconds / n_clips, 4), "acceptance": acceptance}  # fmt: skip
    result = {"words": args.words, "n_per_word": args.n, "seed": args.seed, "torch_threads": torch.get_num_threads(),
              "machine": machine, "reference": reference_entry, "batched": {}}  # fmt: skip
    for context in args.contexts:
        batched.context_samples = int(context * SAMPLE_RATE)
        transcripts, seconds = {}, 0.0
        for word in args.words:
            transcripts[word], took = timed(batched.transcribe_batch, [a for _, a in clips[word]])
            seconds += took
        entry = {"batch_size": batched.batch_size, "seconds_per_clip": round(seconds / n_clips, 4),
                 **compare(args.words, clips, reference, transcripts)}  # fmt: skip
        result["batched"][f"{context:g}s"] = entry
        ms, reference_ms = entry["seconds_per_clip"] * 1000, result["reference"]["seconds_per_clip"] * 1000
        print(f"context {context:g} s: agreement {entry['agreement']:.2%}, {entry['n_disagreements']} disagreements, "
              f"{ms:.0f} ms/clip (reference {reference_ms:.0f})")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(f"written to {RESULTS}")


def onnx_vs_torch(args: argparse.Namespace, clips: dict[str, list]) -> None:
    """Batched QC at the default context, encoder in torch (the reference here) vs onnxruntime."""
    from wakeword.encoders.onnx_frames import BACKEND_ENV

    batched, transcripts, seconds, cpu = WhisperTranscriber(), {}, {}, {}
    for backend in ("torch", "onnx"):
        os.environ[BACKEND_ENV] = backend
        batched.transcribe_batch([a for _, a in clips[args.words[0]][:2]])  # warm-up (and the onnx export)
        transcripts[backend], started, cpu_started = {}, time.perf_counter(), time.process_time()
        for word in args.words:
            transcripts[backend][word] = batched.transcribe_batch([a for _, a in clips[word]])
        seconds[backend], cpu[backend] = time.perf_counter() - started, time.process_time() - cpu_started
    n_clips = sum(len(c) for c in clips.values())
    entry = {"context_seconds": batched.context_samples / SAMPLE_RATE, "batch_size": batched.batch_size,
             "torch_threads": torch.get_num_threads(), "load_average_after": [round(x, 2) for x in os.getloadavg()],
             "seconds_per_clip": {b: round(t / n_clips, 4) for b, t in seconds.items()},
             "cpu_seconds_per_clip": {b: round(t / n_clips, 4) for b, t in cpu.items()},
             **compare(args.words, clips, transcripts["torch"], transcripts["onnx"])}  # fmt: skip
    print(
        f"onnx vs torch: agreement {entry['agreement']:.2%}, {entry['n_disagreements']} disagreements, "
        f"identical transcripts {entry['identical_transcripts']:.2%}, cpu s/clip {entry['cpu_seconds_per_clip']}"
    )
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["onnx_vs_torch"] = {"words": args.words, "n_per_word": args.n, "seed": args.seed, **entry}
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
