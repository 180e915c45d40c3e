"""Long negative audio for the real-world benchmark: the speechocean762 mining half as 5-minute files.

The mining half (speakers never tested on, listed by benchmarks/real_world.py in
benchmarks/cache/speechocean_mining.txt) is a folder of ~5 s sentences; a user's negative audio is long
recordings, so the first `--minutes` of it (sorted file order) are joined into 5-minute FLAC files under
benchmarks/cache/negative_audio_<minutes>min/, and optionally the encoder frames of everything a training
run will stream (those files' segments, and the synthetic long-form calibration corpus) are cached.

    python benchmarks/negative_audio.py --minutes 20 [--warm]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from wakeword.audio import SAMPLE_RATE, load_audio

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "cache"
FILE_MINUTES = 5.0


def build(minutes: float, listing: Path = CACHE / "speechocean_mining.txt") -> Path:
    out = CACHE / f"negative_audio_{minutes:g}min"
    if out.is_dir() and any(out.glob("*.flac")):
        return out
    out.mkdir(parents=True, exist_ok=True)
    files = [Path(line) for line in listing.read_text().split() if line]
    pieces, n_samples, index = [], 0, 0
    for path in files:
        if n_samples >= minutes * 60 * SAMPLE_RATE:
            break
        audio = load_audio(path)
        pieces.append(audio)
        n_samples += len(audio)
        if sum(map(len, pieces)) >= FILE_MINUTES * 60 * SAMPLE_RATE:
            sf.write(out / f"part{index:02d}.flac", np.concatenate(pieces), SAMPLE_RATE)
            pieces, index = [], index + 1
    if pieces:
        sf.write(out / f"part{index:02d}.flac", np.concatenate(pieces), SAMPLE_RATE)
    return out


def warm(folder: Path, calibration_minutes: float) -> None:
    """Encode (and cache) the frames a head-only whisper-tiny.en run streams: negative audio + long form."""
    from tqdm.auto import tqdm

    from wakeword.data.long_audio import build_synthetic_longform, cached_frames, segment_long_audio
    from wakeword.models import get_family
    from wakeword.models.base import DetectorConfig

    config = DetectorConfig("transfer", ("jarvis",), encoder={"name": "whisper-tiny.en", "revision": None,
                            "trainable": "head", "top_k": 2}, head={"hidden": [8]})  # fmt: skip
    model = get_family("transfer").build_model(config).eval()
    sets = [segment_long_audio([folder]), build_synthetic_longform(calibration_minutes)]
    for dataset in sets:
        for clip in tqdm(dataset.clips(), desc=f"frames of {dataset.root.name}"):
            cached_frames(model, dataset.root / clip.path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--calibration-minutes", type=float, default=30.0)
    parser.add_argument("--warm", action="store_true", help="also cache the encoder frames a training run needs")
    args = parser.parse_args()
    folder = build(args.minutes)
    print(folder)
    if args.warm:
        warm(folder, args.calibration_minutes)
