"""The real microphone path: PulseAudio null sink -> its monitor -> PortAudio (ALSA "pulse") -> listen().

A private PulseAudio daemon runs for the test with a null sink; PortAudio reads the sink's monitor
through the ALSA "pulse" device (Debian libasound2-plugins, a dependency of the pulseaudio package).
A TTS wake word is played into the sink with pacat and `listen` must report it within 1 s of the
word's end. Skipped where PulseAudio is not installed; CI installs it.
"""

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_stream import ToneDetector, burst_signal

from wakeword.audio import SAMPLE_RATE
from wakeword.models.base import DetectorConfig
from wakeword.stream import Detection, list_devices, listen

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("pulseaudio") and shutil.which("pacat") and shutil.which("pactl")),
        reason="needs PulseAudio (Debian: pulseaudio pulseaudio-utils libportaudio2)",
    ),
]
SINK = "wakeword_test_sink"
SPEECH_BAND_HZ = (300.0, 3400.0)


def _pactl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def pulse_server(monkeypatch):
    """A private PulseAudio daemon with a null sink (its monitor is the default source)."""
    root = Path(tempfile.mkdtemp(prefix="ww-pa-"))  # short: unix socket paths are limited to 108 bytes
    socket = root / "native"
    (root / "pa.pa").write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={socket}\n"
        f"load-module module-null-sink sink_name={SINK} rate=48000\n"
        f"set-default-sink {SINK}\nset-default-source {SINK}.monitor\n"
    )
    for name, value in {"PULSE_SERVER": f"unix:{socket}", "PULSE_RUNTIME_PATH": str(root / "run"),
                        "PULSE_STATE_PATH": str(root / "state"), "HOME": str(root)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    log = (root / "pulseaudio.log").open("w")
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n", "-F", str(root / "pa.pa"),
         "--log-target=stderr"], stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while _pactl("info").returncode != 0:
            assert daemon.poll() is None, f"pulseaudio exited: {(root / 'pulseaudio.log').read_text()}"
            assert time.monotonic() < deadline, f"pulseaudio not ready: {(root / 'pulseaudio.log').read_text()}"
            time.sleep(0.1)
        _rescan_portaudio()
        yield root
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        log.close()
        _rescan_portaudio()
        shutil.rmtree(root, ignore_errors=True)


def _rescan_portaudio() -> None:
    """PortAudio lists devices once, at initialisation: re-initialise so it sees the new server."""
    import sounddevice

    sounddevice._terminate()
    sounddevice._initialize()


def _wake_word() -> np.ndarray:
    """TTS "hey computer" (espeak-ng via wakeword.data.tts), or a tone burst if TTS is not built."""
    try:
        from wakeword.data.tts import VoiceSettings, build_backend
    except ImportError:
        return burst_signal(0.6, [(0.05, 1000.0)])
    backend = build_backend("espeak")
    voice = next(v for v in backend.voices() if v.language.lower() in ("en-us", "en"))
    return backend.synthesize("hey computer", VoiceSettings(voice)).astype(np.float32)


def _speech_detector(word: np.ndarray) -> ToneDetector:
    """Fires when ~95% of the word's speech-band energy is inside the window: at the word's end."""
    config = DetectorConfig(family="tone-test", wake_words=("hey computer",), window_seconds=1.5, hop_seconds=0.1)
    probe = ToneDetector(config, [SPEECH_BAND_HZ], full_power=[1.0])
    window = np.zeros(config.window_samples, np.float32)
    window[-len(word) :] = word[-config.window_samples :]
    full_power = float(probe.band_power(torch.from_numpy(window)[None])[0, 0])
    return ToneDetector(config, [SPEECH_BAND_HZ], full_power=[full_power])


def _wait_for_recording(deadline_seconds: float = 10.0) -> None:
    """Until PulseAudio has a client recording from the monitor (listen's stream is running)."""
    deadline = time.monotonic() + deadline_seconds
    while not _pactl("list", "short", "source-outputs").stdout.strip():
        assert time.monotonic() < deadline, "listen() never started recording from PulseAudio"
        time.sleep(0.05)


@pytest.mark.parametrize("hops_per_call", [1, 3])
def test_listen_hears_a_wake_word_played_into_pulseaudio(pulse_server, hops_per_call):
    devices = list_devices()
    assert "pulse" in devices, f"PortAudio does not see the PulseAudio device:\n{devices}"
    word = _wake_word()
    speech = np.flatnonzero(np.abs(word) > 0.05 * np.abs(word).max())
    word = word[: speech[-1] + 1]  # the sound ends where the speech ends
    detector = _speech_detector(word)
    clip = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), word])

    events: list[tuple[float, Detection]] = []
    stop, ready = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=listen, args=(detector, "pulse"), kwargs={"on_event": lambda e: events.append((time.monotonic(), e)),
                                                         "stop": stop, "ready": ready, "hops_per_call": hops_per_call},
        daemon=True,
    )  # fmt: skip
    listener.start()
    try:
        _wait_for_recording()
        assert ready.wait(timeout=10), "listen() received no audio from the PulseAudio monitor"
        time.sleep(0.5)  # background silence first: nothing may fire on it
        assert events == []
        # pacat is connected before the clock starts, so its start-up is not counted as listen's latency
        player = subprocess.Popen(
            ["pacat", "--playback", "--raw", "--format=float32le", "--rate=16000", "--channels=1",
             f"--device={SINK}", "--latency-msec=20"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(0.5)
        started = time.monotonic()
        player.stdin.write(clip.astype("<f4").tobytes())
        player.stdin.close()
        word_end = started + len(clip) / SAMPLE_RATE  # earliest wall time the word can have finished
        assert player.wait(timeout=10) == 0, player.stderr.read()
        deadline = time.monotonic() + 3.0
        while not events and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        listener.join(timeout=5)
    assert not listener.is_alive(), "listen() did not return after stop was set"
    assert len(events) == 1, f"expected one detection, got {events}"
    heard_at, event = events[0]
    assert event.word == "hey computer" and event.score >= 0.0  # the default threshold: logit 0
    assert heard_at - word_end < 1.0, f"reported {heard_at - word_end:.2f} s after the word's end"  # 3 hops: +0.2 s
    assert heard_at > started, "fired before the word was played"
