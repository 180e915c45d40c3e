"""Install size of a runtime-only venv: onnxruntime, numpy, sounddevice, soundfile (+ soxr) and this package
without its dependencies, then `wakeword-runtime detect` on an exported model in it.

    python benchmarks/runtime_install.py EXPORT_DIR AUDIO [--out benchmarks/results/runtime_install.json]

Three venvs, from the same Python as this script's base interpreter:
- `default`: `python -m venv` (with pip), `pip install onnxruntime numpy sounddevice soundfile`, then
  `pip install --no-deps <this repo>`: what a user gets following docs/export.md.
- `default+soxr`: the same plus soxr (needed for audio not at 16 kHz, so for most microphones).
- `lean`: `python -m venv --without-pip`, packages installed from outside with `pip --python ... --no-compile`
  (no pip, setuptools or precompiled bytecode inside): what a small container would ship.
Sizes are `du` of the venv folder (the interpreter itself is a symlink and not counted).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ["onnxruntime", "numpy", "sounddevice", "soundfile"]


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def make_venv(root: Path, lean: bool, extra: list[str]) -> Path:
    base = Path(sys.base_prefix) / "bin" / "python3"
    venv = root / ("lean" if lean else "default")
    subprocess.run([str(base), "-m", "venv", *(["--without-pip"] if lean else []), str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile"] if lean else [
        str(python), "-m", "pip", "install", "-q"]  # fmt: skip
    subprocess.run([*pip, *RUNTIME_PACKAGES, *extra], check=True)
    subprocess.run([*pip, "--no-deps", str(REPO)], check=True)
    return venv


def run_detect(venv: Path, export_dir: Path, audio: Path) -> dict:
    start = time.monotonic()
    result = subprocess.run(
        [str(venv / "bin" / "wakeword-runtime"), "detect", str(export_dir), str(audio)],
        capture_output=True, text=True, cwd=tempfile.gettempdir(),  # not the repo: the installed copy runs
    )  # fmt: skip
    check = "import sys, wakeword.runtime; print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    heavy = ["torch", "torchaudio", "transformers", "scipy", "librosa", "onnx", "gradio"]
    modules = subprocess.run([str(venv / "bin" / "python"), "-c", check, *heavy], capture_output=True, text=True)
    return {
        "returncode": result.returncode,
        "seconds": round(time.monotonic() - start, 2),
        "events": [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")],
        "stderr": result.stderr[-500:],
        "heavy_modules_imported": modules.stdout.strip() if modules.returncode == 0 else modules.stderr[-300:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/runtime_install.json")
    args = parser.parse_args()
    results = {"python": platform.python_version(), "packages": RUNTIME_PACKAGES, "venvs": {}}
    with tempfile.TemporaryDirectory(prefix="ww-runtime-venv-") as tmp:
        for name, lean, extra in (("default", False, []), ("default+soxr", False, ["soxr"]), ("lean", True, [])):
            root = Path(tmp) / name.replace("+", "_")
            venv = make_venv(root, lean, extra)
            site = next((venv / "lib").glob("python*/site-packages"))
            sizes = {p.name: folder_mb(p) for p in site.iterdir() if p.is_dir()}
            largest = dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:6])
            detect = run_detect(venv, args.export_dir.resolve(), args.audio.resolve())
            results["venvs"][name] = {
                "venv_mb": round(folder_mb(venv), 1),
                "largest_packages_mb": {k: round(v, 1) for k, v in largest.items()},
                "detect": detect,
            }
            print(name, results["venvs"][name]["venv_mb"], "MB; detect rc", detect["returncode"], flush=True)
            shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
