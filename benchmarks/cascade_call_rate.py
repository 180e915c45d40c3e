"""How often does a cascade's gate open, and on what? The share of hops sent to stage 2, per kind of audio (issue 14).

    python benchmarks/cascade_call_rate.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--minutes 3] [--tag _x]

The call rate is exactly the share of hops whose stage-1 logit reaches the gate, so only stage 1 runs here (the
cost of a whole cascade follows from it: stage 1's cost plus the call rate times stage 2's). Kinds of audio:
- speech: benchmarks/cascade_speed.py's speech stream (the held-out half of the speechocean762 speakers, 0.3-2 s
  gaps, the shared noise at 10 dB SNR), `--minutes` of it;
- the shared noise files at their own level, 40 dB down, and digital silence (cascade_speed.py's quiet stream,
  `--minutes` of it: 30 s pieces in turn). Both stages' training mixes these noise files into its clips;
- made noise no training run has heard: white, pink and brown, each at -50, -30 and -15 dBFS, 20 s each (a
  seed of its own: the same samples for every model).
Results: benchmarks/results/cascade_call_rate<--tag>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when run as a script

import cascade_speed

from wakeword.checkpoint import load_detector
from wakeword.stream import score_array

RESULTS = cascade_speed.RESULTS
QUIET_KINDS = ("shared noise", "shared noise -40 dB", "digital silence")  # quiet_stream's pieces, in turn
COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power falls as 1/f^exponent
LEVELS_DB = (-50, -30, -15)
MADE_SECONDS, MADE_SEED = 20.0, 12345


def made_noise(exponent: float, level_db: float, seconds: float, seed: int) -> np.ndarray:
    """Stationary 1/f^exponent noise at an RMS of level_db dBFS, (n_samples,) float32 in [-1, 1]."""
    n = int(seconds * cascade_speed.SAMPLE_RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1.0 / cascade_speed.SAMPLE_RATE)
    spectrum[1:] *= frequencies[1:] ** (-exponent / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    noise *= 10.0 ** (level_db / 20.0) / np.sqrt((noise**2).mean())
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


def streams(minutes: float) -> dict[str, np.ndarray]:
    """Every kind of audio, name -> (n_samples,) float32 16 kHz."""
    out = {"speech": np.concatenate(list(cascade_speed.speech_stream(minutes * 60)))}
    pieces = list(cascade_speed.quiet_stream(minutes * 60))
    for k, kind in enumerate(QUIET_KINDS):
        out[kind] = np.concatenate(pieces[k::3])
    for index, (colour, exponent) in enumerate(COLOURS.items()):
        for level in LEVELS_DB:
            out[f"{colour} noise {level} dBFS"] = made_noise(exponent, level, MADE_SECONDS, MADE_SEED + index)
    return out


def call_rates(model_dir: Path, audio: dict[str, np.ndarray]) -> dict[str, float]:
    """Per kind of audio, the share of hops whose stage-1 logit reaches the gate of any word."""
    cascade = load_detector(model_dir)
    gates = np.array([cascade.gate.logits[w] for w in cascade.wake_words])
    rates = {}
    for name, signal in audio.items():
        # the cascade's stage 1 reads the end of each window; its own window ends at the same times
        first = score_array(cascade.stage1, signal)[1]
        rates[name] = float((first >= gates).any(axis=1).mean())
    return rates


def table(results: dict) -> str:
    names = list(results["models"])
    kinds = list(next(iter(results["models"].values()))["call_rate"])
    lines = [f"| audio | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    gates = [f"{results['models'][n]['gate']:.2f}" for n in names]
    lines.append(f"| gate (stage-1 logit) | {' | '.join(gates)} |")
    for kind in kinds:
        cells = [f"{100 * results['models'][n]['call_rate'][kind]:.1f}%" for n in names]
        lines.append(f"| {kind} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR of cascades")
    parser.add_argument("--minutes", type=float, default=3.0, help="speech, and the quiet stream")
    parser.add_argument("--tag", default="", help="suffix of the results file names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    audio = streams(args.minutes)
    results = {"minutes": args.minutes, "made_noise_seconds": MADE_SECONDS, "models": {}}
    for spec in args.models:
        name, folder = spec.split("=", 1)
        gate = json.loads((Path(folder) / "config.json").read_text())["head"]["gate"]["logits"]
        results["models"][name] = {"folder": folder, "gate": float(min(gate.values())),
                                   "call_rate": call_rates(Path(folder), audio)}  # fmt: skip
        print(name, json.dumps(results["models"][name]["call_rate"]), flush=True)
    out = RESULTS / f"cascade_call_rate{args.tag}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    command = "python benchmarks/cascade_call_rate.py " + " ".join(args.models) + f" --minutes {args.minutes:g}"
    out.with_suffix(".md").write_text(f"# Share of hops sent to stage 2\n\n`{command}`\n\n{table(results)}\n")
    print(table(results))


if __name__ == "__main__":
    main()
