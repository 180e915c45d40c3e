"""Streaming detection with a tiny real torch detector that fires on tone bursts."""

import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from wakeword.audio import SAMPLE_RATE, AudioError, load_audio
from wakeword.metrics import detection_hops, logit, probability
from wakeword.models.base import Detector, DetectorConfig
from wakeword.stream import (
    Detection,
    StreamingDetector,
    detect_file,
    iter_array_blocks,
    iter_file_blocks,
    score_array,
    score_file,
)

BURST_SECONDS = 0.5
AMPLITUDE = 0.5


class ToneDetector(Detector):
    """One word per frequency band: the logit rises with the band's power in the window.

    full_power: per word, the band power of the target sound wholly inside a window (default: a
    BURST_SECONDS tone burst at AMPLITUDE). The fixed linear layer puts probability 0.5 at 95% of it,
    so the detector fires when (nearly) all of the sound is in the window: at the sound's end.
    """

    family = "tone-test"

    def __init__(
        self, config: DetectorConfig, bands_hz: list[tuple[float, float]], full_power: list[float] | None = None
    ) -> None:
        super().__init__(config)
        frequencies = torch.fft.rfftfreq(config.window_samples, 1 / SAMPLE_RATE)
        masks = [(frequencies >= low) & (frequencies <= high) for low, high in bands_hz]
        self.register_buffer("masks", torch.stack(masks).float())  # (n_words, n_bins)
        burst = AMPLITUDE**2 / 2 * BURST_SECONDS / config.window_seconds
        full = torch.tensor(full_power or [burst] * len(bands_hz), dtype=torch.float32)
        self.register_buffer("scale", 100.0 / full)
        self.linear = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.linear.weight.fill_(1.0)
            self.linear.bias.fill_(-100.0 * 0.95)

    def band_power(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, window_samples) -> mean-square power of each word's band, (batch, n_words)."""
        spectrum = torch.view_as_real(torch.fft.rfft(audio, dim=-1)).square().sum(-1)  # |X|^2
        return 2 * spectrum @ self.masks.T / audio.shape[-1] ** 2

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        relative = self.band_power(audio) * self.scale  # 100 = the full sound inside the window
        return self.linear(relative.unsqueeze(-1)).squeeze(-1)  # (batch, n_words)


def build_tone_detector(window_seconds: float = 1.5, hop_seconds: float = 0.1) -> ToneDetector:
    config = DetectorConfig(
        family="tone-test", wake_words=("low", "high"), window_seconds=window_seconds, hop_seconds=hop_seconds
    )
    return ToneDetector(config, [(900.0, 1100.0), (2400.0, 2600.0)])


def burst_signal(seconds: float, bursts: list[tuple[float, float]], rate: int = SAMPLE_RATE) -> np.ndarray:
    """Quiet noise with BURST_SECONDS tone bursts (start_seconds, frequency_hz)."""
    rng = np.random.default_rng(0)
    audio = 0.01 * rng.standard_normal(int(seconds * rate))
    for start, frequency in bursts:
        t = np.arange(int(BURST_SECONDS * rate)) / rate
        begin = int(start * rate)
        audio[begin : begin + len(t)] += AMPLITUDE * np.sin(2 * np.pi * frequency * t)
    return audio.astype(np.float32)


def offline_scores(detector: Detector, audio: np.ndarray) -> np.ndarray:
    """All windows at once, built independently of the streaming code: (n_hops, n_words)."""
    window, hop = detector.config.window_samples, detector.config.hop_samples
    n_hops = -(-len(audio) // hop)
    padded = np.concatenate([np.zeros(window, np.float32), audio, np.zeros(hop, np.float32)])
    windows = np.stack([padded[(k + 1) * hop : (k + 1) * hop + window] for k in range(n_hops)])
    return detector.score(torch.from_numpy(windows)).numpy()


@pytest.fixture(scope="module")
def detector() -> ToneDetector:
    return build_tone_detector()


def test_detector_fires_on_a_full_burst_only(detector):
    window = np.zeros(detector.config.window_samples, np.float32)
    t = np.arange(int(BURST_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    full, half = window.copy(), window.copy()
    full[-len(t) :] = AMPLITUDE * np.sin(2 * np.pi * 1000 * t)
    half[-len(t) // 2 :] = full[-len(t) : -len(t) // 2]
    scores = probability(detector.score(torch.from_numpy(np.stack([window, half, full]))).numpy())
    assert scores[2, 0] > 0.9 and scores[2, 1] < 0.01
    assert scores[0].max() < 0.01 and scores[1, 0] < 0.01


def test_streaming_in_odd_blocks_equals_offline_scoring(detector, tmp_path):
    audio = burst_signal(7.05, [(1.0, 1000.0), (4.0, 2500.0)])
    path = tmp_path / "x.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    expected = offline_scores(detector, audio)
    assert len(expected) == 71  # ceil(7.05 / 0.1): the last partial hop is zero-padded

    streamer = StreamingDetector(detector, batch_hops=4)
    results = [streamer.process(audio[i : i + 1234]) for i in range(0, len(audio), 1234)] + [streamer.flush()]
    streamed = np.concatenate([r.scores for r in results])
    times = np.concatenate([r.times_seconds for r in results])
    np.testing.assert_allclose(streamed, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(times, 0.1 * np.arange(1, 72))

    rows = list(score_file(detector, path))
    np.testing.assert_allclose([r[1] for r in rows], expected, rtol=1e-5, atol=1e-4)
    assert [r[0] for r in rows] == pytest.approx(times.tolist())
    high = [r[1] for r in score_file(detector, path, word="high")]
    np.testing.assert_allclose(high, expected[:, 1:], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="unknown word"):
        next(score_file(detector, path, word="nope"))


def test_detections_at_burst_end_and_per_word(detector):
    audio = burst_signal(10.0, [(1.0, 1000.0), (4.0, 2500.0), (7.3, 1000.0)])
    streamer = StreamingDetector(detector)
    events = [e for block in iter_array_blocks(audio, block_seconds=0.37) for e in streamer.process(block).detections]
    events += streamer.flush().detections
    assert [e.word for e in events] == ["low", "high", "low"]
    for event, start in zip(events, [1.0, 4.0, 7.3], strict=True):
        end = start + BURST_SECONDS
        assert end - 0.05 <= event.time_seconds <= end + 0.1  # the first hop with ~all the burst inside
        assert event.end_seconds == event.time_seconds
        assert event.start_seconds <= start + 0.1 and event.score >= 0.5


def test_wait_for_peak_tightens_the_word_start(detector):
    audio = burst_signal(4.0, [(1.0, 1000.0)])
    (event,) = StreamingDetector(detector, wait_for_peak=True).process(audio).detections
    (onset,) = StreamingDetector(detector).process(audio).detections
    assert event.time_seconds == onset.time_seconds and event.score >= onset.score
    # the burst (1.0-1.5 s) stays in the window until its start leaves it: last firing window ends ~2.5 s
    assert 0.8 <= event.start_seconds <= 1.1 and onset.start_seconds < 0.1


def test_stream_detections_match_metrics_on_its_own_scores(detector):
    # a burst fires from its end until its start leaves the 1.5 s window (1 s); onsets 1.7 s apart
    bursts = [(0.5, 1000.0), (2.2, 1000.0), (5.0, 1000.0), (6.7, 1000.0), (10.0, 1000.0)]
    audio = burst_signal(12.0, bursts)
    for refractory in (0.0, 1.0, 2.0):
        streamer = StreamingDetector(detector, refractory_seconds=refractory, smoothing_hops=2)
        result = streamer.process(audio)
        expected = detection_hops(result.scores[:, 0], 0.0, 0.1, refractory)  # the default threshold
        got = [round(e.time_seconds / 0.1) - 1 for e in result.detections if e.word == "low"]
        assert got == expected.tolist()
    # refractory 2 s drops the second burst of each close pair, 1.5 s keeps all five (1.7 s apart)
    assert len(StreamingDetector(detector, refractory_seconds=1.5).process(audio).detections) == 5
    assert len(StreamingDetector(detector, refractory_seconds=2.0).process(audio).detections) == 3


def test_smoothing_is_a_running_mean_of_probabilities(detector):
    audio = burst_signal(3.0, [(0.5, 1000.0)])
    _, raw = score_array(detector, audio)
    _, smooth = score_array(detector, audio, smoothing_hops=3)
    p = probability(raw.astype(np.float64))
    expected = np.array([p[max(0, i - 2) : i + 1].mean(axis=0) for i in range(len(p))])
    np.testing.assert_allclose(probability(smooth.astype(np.float64)), expected, atol=1e-6)


def test_thresholds_per_word(detector):
    audio = burst_signal(3.0, [(0.5, 1000.0)])
    assert StreamingDetector(detector, thresholds={"low": float(logit(0.9999999))}).process(audio).detections == []
    with pytest.raises(ValueError, match="unknown word"):
        StreamingDetector(detector, thresholds={"hey": 0.5})


def test_memory_stays_bounded_on_a_long_stream():
    detector = build_tone_detector(window_seconds=0.5, hop_seconds=0.1)
    # a burst fills this 0.5 s window at one hop only; the mean over 2 hops then peaks near 0.5
    streamer = StreamingDetector(detector, thresholds={"low": float(logit(0.4))}, smoothing_hops=2)
    rng = np.random.default_rng(1)
    block = (0.01 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    tracemalloc.start()
    n_hops, n_events = 0, 0
    for second in range(600):  # 10 minutes, one generated second at a time
        if second % 60 == 0:
            tracemalloc.reset_peak()
        result = streamer.process(block if second % 30 else block + burst_signal(1.0, [(0.2, 1000.0)]))
        n_hops += len(result.times_seconds)
        n_events += len(result.detections)
        assert streamer.buffered_samples < detector.config.window_samples + detector.config.hop_samples
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n_hops == 6000 and n_events == 20
    assert peak < 2_000_000  # the last minute alone is 3.8 MB of samples; nothing accumulates


def test_file_source_resamples_8k_stereo(detector, tmp_path):
    rate = 8000
    mono = burst_signal(5.0, [(2.0, 1000.0)], rate=rate)
    # a 2.5 kHz tone in antiphase cancels in the downmix: "high" fires only if a channel is dropped
    other = 0.4 * np.sin(2 * np.pi * 2500 * np.arange(len(mono)) / rate).astype(np.float32)
    stereo = np.stack([mono + other, mono - other], axis=1)
    path = tmp_path / "stereo8k.wav"
    sf.write(path, stereo, rate)
    streamed = np.concatenate(list(iter_file_blocks(path, block_seconds=0.3)))
    reference = load_audio(path)
    assert abs(len(streamed) - 5 * SAMPLE_RATE) <= 2
    np.testing.assert_allclose(streamed[: len(reference)], reference[: len(streamed)], atol=2e-3)
    spectrum = np.abs(np.fft.rfft(streamed[32000:40000]))
    assert np.fft.rfftfreq(8000, 1 / SAMPLE_RATE)[np.argmax(spectrum)] == pytest.approx(1000, abs=3)
    (event,) = detect_file(detector, path)
    assert isinstance(event, Detection) and event.word == "low"
    assert 2.45 <= event.time_seconds <= 2.6


def test_file_errors_name_the_file(tmp_path, detector):
    with pytest.raises(AudioError, match=r"missing\.wav: no such file"):
        list(iter_file_blocks(tmp_path / "missing.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match=r"bad\.wav: unreadable"):
        list(detect_file(detector, bad))


def test_realtime_pacing_takes_the_audio_duration():
    audio = np.zeros(int(0.4 * 8000), np.float32)
    started = time.monotonic()
    blocks = list(iter_array_blocks(audio, sample_rate=8000, block_seconds=0.1, realtime=True))
    elapsed = time.monotonic() - started
    assert 0.38 <= elapsed < 1.5
    assert abs(sum(len(b) for b in blocks) - int(0.4 * SAMPLE_RATE)) <= 2


def test_listen_scores_one_hop_per_call_unless_the_detector_asks_for_more(detector):
    """A cascade's live cost is mostly per call, so it listens three hops per call; other families one."""
    from wakeword.models import get_family
    from wakeword.models.base import Detector
    from wakeword.stream import live_hops_per_call

    def family_class(name: str) -> type:
        module = vars(get_family(name)).values()
        (cls,) = [v for v in module if isinstance(v, type) and issubclass(v, Detector) and v.family == name]
        return cls

    assert live_hops_per_call(detector) == 1  # the test's tone detector: the base class's default
    assert [live_hops_per_call(family_class(f)) for f in ("e2e", "transfer", "phoneme", "cascade")] == [1, 1, 1, 3]
    assert live_hops_per_call(object()) == 1  # anything else StreamingDetector scores


def test_listen_refuses_fewer_than_one_hop_per_call(detector):
    from wakeword.stream import listen_with

    with pytest.raises(ValueError, match="hops_per_call"):
        listen_with(StreamingDetector(detector), device="no such device", hops_per_call=0)
