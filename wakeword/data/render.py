"""Rendering speech jobs so that the audio depends on the seed alone, on both cores.

espeak-ng is not a pure function of (text, voice): it seeds its noise generator (breath) from the clock when it
starts, and keeps state from one utterance to the next in static variables (pitch-flutter phase, gain control),
so in one process the same clip comes out differently with what was rendered before it, and differently in every
run. Measured: 249 of 300 seeded "hey computer" clips changed when rendered in reverse order, and three fresh
processes rendering the same 100 clips gave three different outputs. Two quickstart runs therefore kept
different positives after quality control, and ended with different held-out sets.

So jobs are cut into fixed chunks of `CHUNK` jobs, and every chunk is rendered in its own process, forked from a
small "zygote" (`python -m wakeword.data.render`) that has imported the synthesiser but never synthesised, after
seeding espeak-ng's generator with the chunk's seed. A chunk's audio is then a function of (seed, stream, chunk)
only: the same for one worker or many, in any order, whatever the calling process did before. The zygote is a
plain subprocess, so the caller needs no `if __name__ == "__main__"` guard (a multiprocessing fork server would
re-run the caller's script), and it never holds torch's threads (forking the trainer itself would). Up to
`workers` chunks render at once and are yielded in job order; espeak-ng is single-threaded, so two workers use
both cores.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

CHUNK = 32  # jobs per forked process: a fork and an espeak-ng start-up (~30 ms) per chunk
Job = tuple[str, object]  # (text, VoiceSettings)


class RenderError(RuntimeError):
    """A render process failed; the message carries its error."""


def chunk_seed(seed: int, stream: int, chunk: int) -> int:
    """The espeak-ng seed of one chunk: independent streams for positives and negatives of one build."""
    return int(np.random.SeedSequence([seed, stream, chunk]).generate_state(1)[0])


def render_chunk(backend: object, jobs: Sequence[Job], seed: int) -> list[np.ndarray]:
    """(n_samples,) float32 16 kHz audio of every job, after seeding the backend's generator (espeak-ng)."""
    from wakeword.data.tts import EspeakBackend, _espeak

    if isinstance(backend, EspeakBackend):
        _espeak().seed(seed)
    return [backend.synthesize(text, voice) for text, voice in jobs]


class Renderer:
    """Renders the jobs of one build: through the zygote for espeak-ng (reproducible), else in this process.

    Other backends render here, one job at a time: Piper and flite hold no state between utterances that we
    know of, and a Piper voice is not worth loading once per chunk."""

    def __init__(self, backend: object, workers: int = 2) -> None:
        from wakeword.data.tts import EspeakBackend

        self.backend, self.workers, self.zygote = backend, max(1, workers), None
        if isinstance(backend, EspeakBackend) and workers > 0 and hasattr(os, "fork"):  # no fork: Windows
            self.folder = Path(tempfile.mkdtemp(prefix="wakeword-render-"))
            command = [sys.executable, "-m", "wakeword.data.render", str(self.folder)]
            package_root = str(Path(__file__).resolve().parents[2])  # importable however the caller found it
            path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
            env = {**os.environ, "PYTHONPATH": path}
            self.zygote = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.n_requests = 0

    def render(self, jobs: Sequence[Job], seed: int, stream: int) -> Iterator[np.ndarray]:
        """The audio of every job, in order; up to `workers` chunks are rendered ahead of the consumer."""
        chunks = [jobs[start : start + CHUNK] for start in range(0, len(jobs), CHUNK)]
        if self.zygote is None:
            for index, chunk in enumerate(chunks):
                yield from render_chunk(self.backend, chunk, chunk_seed(seed, stream, index))
            return
        names, submitted = [], 0
        for index in range(len(chunks)):
            while submitted < len(chunks) and submitted < index + self.workers:
                names.append(self._submit(chunks[submitted], chunk_seed(seed, stream, submitted)))
                submitted += 1
            yield from self._collect(names[index])

    def _submit(self, jobs: Sequence[Job], seed: int) -> str:
        name = f"{self.n_requests:06d}"
        self.n_requests += 1
        request = pickle.dumps((name, self.backend, list(jobs), seed))
        self.zygote.stdin.write(len(request).to_bytes(8, "little") + request)
        self.zygote.stdin.flush()
        return name

    def _collect(self, name: str) -> list[np.ndarray]:
        """Wait for chunk `name` (its file appears atomically when its process is done)."""
        done = self.folder / f"{name}.pkl"
        while not done.exists():
            line = self.zygote.stdout.readline().decode().split()
            if not line:
                raise RenderError(f"the render process ended (exit code {self.zygote.wait()})")
            if line[1] != "ok":
                raise RenderError(f"rendering chunk {line[0]} failed: {' '.join(line[2:])}")
        with open(done, "rb") as handle:
            audio = pickle.load(handle)
        done.unlink()
        return audio

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.stdin.close()
            self.zygote.wait()
            self.zygote = None
            shutil.rmtree(self.folder, ignore_errors=True)


# -- the zygote: reads requests on stdin, forks one child per chunk, reports "<name> ok|failed ..." on stdout --
def _child(folder: Path, name: str, backend: object, jobs: Sequence[Job], seed: int) -> None:
    try:
        audio = render_chunk(backend, jobs, seed)
        staging = folder / f".{name}.tmp"
        staging.write_bytes(pickle.dumps(audio))
        os.replace(staging, folder / f"{name}.pkl")
        os.write(1, f"{name} ok\n".encode())
        os._exit(0)
    except BaseException as error:  # the child must never return into the zygote's loop
        os.write(1, f"{name} failed {type(error).__name__}: {error}".replace("\n", " ").encode() + b"\n")
        os._exit(1)


def _read_exact(n_bytes: int) -> bytes:
    data = b""
    while len(data) < n_bytes:
        part = os.read(0, n_bytes - len(data))
        if not part:
            break
        data += part
    return data


def _reap(children: dict[int, str], block: bool = False) -> None:
    """Collect finished children; report one that died without a word (a crash in espeak-ng, a kill)."""
    for pid in list(children):
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            if code not in (0, 1):
                os.write(1, f"{children[pid]} failed exit code {code}\n".encode())
            del children[pid]


def _zygote(folder: Path) -> None:
    import wakeword.data.synth  # noqa: F401  (imported once here; every child starts with it)
    from wakeword.audio import resample

    resample(np.zeros(441, np.float32), 22050, 16000)  # imports librosa and soxr (seconds) once, not per child

    children: dict[int, str] = {}
    while True:
        if not select.select([0], [], [], 0.1)[0]:
            _reap(children)
            continue
        header = _read_exact(8)
        if len(header) < 8:  # the caller closed the pipe: done
            break
        request = pickle.loads(_read_exact(int.from_bytes(header, "little")))
        pid = os.fork()
        if pid == 0:
            _child(folder, *request)
        children[pid] = request[0]
    _reap(children, block=True)


if __name__ == "__main__":
    _zygote(Path(sys.argv[1]))
