"""Speed of the pretrained encoders on this machine's CPU.

    python benchmarks/encoder_speed.py [--batch 32] [--repeats 5]

Measures, per encoder: build time (Whisper: the one-time conversion of the bundled CTranslate2 weights into a
fresh cache, then a cache hit), parameters, output frames per 1.5 s window, and forward time (no grad, eval)
per window at batch 1 and at --batch. For the speech embedding it also times the CNN run window by window
(76 mel frames every 8, as openWakeWord does) against the one fully convolutional pass the module uses, and
checks they agree. Median of --repeats. Writes benchmarks/results/encoder_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from wakeword.audio import SAMPLE_RATE, WINDOW_SECONDS

RESULTS = Path(__file__).parent / "results" / "encoder_speed.json"


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: first-call allocations and lazy initialisation stay outside the clock
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_forward(encoder, batch: int, repeats: int) -> dict:
    n_samples = int(WINDOW_SECONDS * SAMPLE_RATE)
    audio = torch.randn(batch, n_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    single = median_seconds(lambda: encoder.encode(audio[:1]), repeats)
    batched = median_seconds(lambda: encoder.encode(audio), repeats)
    return {"ms_per_window_batch_1": round(1000 * single, 2),
            f"ms_per_window_batch_{batch}": round(1000 * batched / batch, 2),
            "windows_per_second_batched": round(batch / batched, 1)}  # fmt: skip


def describe(encoder) -> dict:
    n_samples = int(WINDOW_SECONDS * SAMPLE_RATE)
    return {"dim": encoder.dim, "n_layers": len(encoder.layers),
            "n_parameters": sum(p.numel() for p in encoder.parameters()),
            "frames_per_window": encoder.n_frames(n_samples), "window_seconds": WINDOW_SECONDS}  # fmt: skip


def whisper(batch: int, repeats: int) -> dict:
    from wakeword.encoders import build_encoder

    with tempfile.TemporaryDirectory() as cache:
        os.environ["WAKEWORD_CACHE_DIR"] = cache
        start = time.perf_counter()
        build_encoder("whisper-tiny.en")
        convert_seconds = time.perf_counter() - start
        start = time.perf_counter()
        encoder = build_encoder("whisper-tiny.en")
        load_seconds = time.perf_counter() - start
    return {"first_build_with_conversion_seconds": round(convert_seconds, 2),
            "cached_build_seconds": round(load_seconds, 2),
            **describe(encoder), **time_forward(encoder, batch, repeats)}  # fmt: skip


def windowed_cnn(mel: torch.Tensor):
    """openWakeWord's way: the unmodified CNN on each 76-frame window. mel (batch, n_mel_frames, 32)."""
    import onnx
    from onnx2torch import convert

    from wakeword.encoders.speech_embedding import EMBEDDING_FILE, N_WINDOW_FRAMES, WINDOW_STRIDE_FRAMES, onnx_dir

    cnn = convert(onnx.load(str(onnx_dir() / EMBEDDING_FILE))).eval()
    windows = mel.unfold(1, N_WINDOW_FRAMES, WINDOW_STRIDE_FRAMES).transpose(2, 3)  # (batch, n, 76, 32)
    flat = windows.reshape(-1, N_WINDOW_FRAMES, mel.shape[-1], 1)
    return lambda: cnn(flat).reshape(mel.shape[0], windows.shape[1], -1)


def speech_embedding(batch: int, repeats: int) -> dict:
    from wakeword.encoders import build_encoder

    start = time.perf_counter()
    encoder = build_encoder("speech-embedding")
    build_seconds = time.perf_counter() - start
    audio = torch.randn(batch, int(WINDOW_SECONDS * SAMPLE_RATE), generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        mel = encoder.mel_features(audio)
        windowed = windowed_cnn(mel)
        full = lambda: encoder.embedding(mel[:, None])[..., 0].transpose(1, 2)  # noqa: E731
        difference = (windowed() - full()).abs().max().item()
        cnn = {"cnn_windowed_ms_per_window": round(1000 * median_seconds(windowed, repeats) / batch, 2),
               "cnn_one_pass_ms_per_window": round(1000 * median_seconds(full, repeats) / batch, 2),
               "cnn_max_abs_difference": difference}  # fmt: skip
    return {
        "build_seconds": round(build_seconds, 2),
        **describe(encoder),
        **time_forward(encoder, batch, repeats),
        **cnn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    result = {"machine": machine,
              "whisper-tiny.en": whisper(args.batch, args.repeats),
              "speech-embedding": speech_embedding(args.batch, args.repeats)}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
