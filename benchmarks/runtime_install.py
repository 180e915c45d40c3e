"""Install size of a runtime-only venv, made exactly as docs/export.md says, then `wakeword-runtime detect`
on an exported model in it.

    python benchmarks/runtime_install.py EXPORT_DIR AUDIO [--out benchmarks/results/runtime_install.json]

Two venvs, from the base interpreter of the Python running this script:
- `documented` (docs/export.md and the README): `python -m venv --without-pip VENV`, then the packages
  installed into it by the pip running this script (`pip --python VENV/bin/python install --no-compile
  onnxruntime numpy sounddevice soundfile soxr`, then `... --no-deps <this repo>`). No pip or setuptools
  inside, and no bytecode compiled ahead for modules that never run.
- `pip-inside`, for comparison: `python -m venv VENV` (pip and setuptools inside) and
  `VENV/bin/pip install onnxruntime numpy sounddevice soundfile soxr`, `VENV/bin/pip install --no-deps .`.
Each venv is measured AFTER `wakeword-runtime detect` ran in it, so the bytecode Python writes for the
modules the runtime imports is counted (PYTHONDONTWRITEBYTECODE is unset for that run). Size = the sum of
the venv's file sizes (the interpreter is a symlink to the Python it was made from and is not counted);
the largest site-packages entries are listed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ["onnxruntime", "numpy", "sounddevice", "soundfile", "soxr"]
HEAVY = ["torch", "torchaudio", "transformers", "scipy", "librosa", "onnx", "gradio"]


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def commands(venv: Path, documented: bool) -> list[list[str]]:
    """The install commands, as a user types them (with `python` = this script's base interpreter)."""
    base = str(Path(sys.base_prefix) / "bin" / "python3")
    if documented:
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-compile"]
        return [
            [base, "-m", "venv", "--without-pip", str(venv)],
            [*pip, *RUNTIME_PACKAGES],
            [*pip, "--no-deps", str(REPO)],
        ]
    pip = [str(venv / "bin" / "pip"), "install"]
    return [[base, "-m", "venv", str(venv)], [*pip, *RUNTIME_PACKAGES], [*pip, "--no-deps", str(REPO)]]


def run_detect(venv: Path, export_dir: Path, audio: Path) -> dict:
    # as a user runs it: Python writes bytecode for what it imports (unless told not to, as here it may be)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.monotonic()
    result = subprocess.run(
        [str(venv / "bin" / "wakeword-runtime"), "detect", str(export_dir), str(audio)],
        capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env,  # cwd: the installed copy runs
    )  # fmt: skip
    check = "import sys, wakeword.runtime; print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    modules = subprocess.run(
        [str(venv / "bin" / "python"), "-c", check, *HEAVY], capture_output=True, text=True, env=env
    )
    return {
        "returncode": result.returncode,
        "seconds": round(time.monotonic() - start, 2),
        "events": [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")],
        "stderr": result.stderr[-500:],
        "heavy_modules_imported": modules.stdout.strip() if modules.returncode == 0 else modules.stderr[-300:],
    }


def versions(venv: Path) -> dict[str, str]:
    code = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code, *RUNTIME_PACKAGES], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/runtime_install.json")
    args = parser.parse_args()
    pip_version = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True).stdout
    results = {
        "protocol": __doc__.split("\n\n")[2].strip(),
        "python": platform.python_version(),
        "host_pip": pip_version.split(" from ")[0],
        "packages": RUNTIME_PACKAGES,
        "target_mb": 150,
        "venvs": {},
    }
    with tempfile.TemporaryDirectory(prefix="ww-runtime-venv-") as tmp:
        for name, documented in (("documented", True), ("pip-inside", False)):
            venv = Path(tmp) / name / "venv"
            steps = commands(venv, documented)
            for step in steps:
                subprocess.run([*step, *(["-q"] if "install" in step else [])], check=True)
            detect = run_detect(venv, args.export_dir.resolve(), args.audio.resolve())
            site = next((venv / "lib").glob("python*/site-packages"))
            sizes = {p.name: folder_mb(p) for p in site.iterdir() if p.is_dir()}
            largest = dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:8])
            bytecode = sum(folder_mb(p) for p in venv.rglob("__pycache__"))
            results["venvs"][name] = {
                "commands": [" ".join(s).replace(str(venv), "VENV").replace(str(REPO), ".") for s in steps],
                "venv_mb": round(folder_mb(venv), 1),
                "bytecode_mb": round(bytecode, 1),
                "largest_site_packages_mb": {k: round(v, 1) for k, v in largest.items()},
                "versions": versions(venv),
                "detect": detect,
            }
            print(name, results["venvs"][name]["venv_mb"], "MB; detect rc", detect["returncode"], flush=True)
            shutil.rmtree(venv.parent, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
