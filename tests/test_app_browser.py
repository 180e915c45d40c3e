"""End to end in a real headless Chromium: record a clip through the Record tab, detect live in the Detect tab and
mark the activation wrong (Listen and correct), train a tiny model in the Train tab, look at it in the Models tab,
retrain it with the correction and roll it back. Screenshots go to docs/screenshots/.

Chromium's fake microphone plays a WAV in a loop (--use-file-for-fake-audio-capture); the WAVs are espeak-ng
speech made here. The live detector is the untrained `phoneme` family, its threshold calibrated here on
another voice than the one the browser hears.
"""

from __future__ import annotations

import socket
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wakeword.audio import SAMPLE_RATE, resample
from wakeword.checkpoint import save_detector
from wakeword.data.clips import DataSet
from wakeword.metrics import logit, probability
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig
from wakeword.stream import score_array

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
WORD, NEGATIVE = "hey computer", "the weather is nice today, let us go for a walk"
MODEL = "hey-computer-phoneme"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]  # fmt: skip


def test_app_binds_to_localhost_by_default():
    import app

    assert app.build_parser().parse_args([]).host == "127.0.0.1"
    assert app.build_parser().parse_args(["--host", "0.0.0.0"]).host == "0.0.0.0"


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt install chromium)")


def write_loop_wav(path: Path, audio: np.ndarray) -> Path:
    """1 s silence + speech + 1 s silence as 48 kHz 16-bit mono: what Chromium's fake capture reads best."""
    silence = np.zeros(SAMPLE_RATE, np.float32)
    signal = np.concatenate([silence, 0.8 * audio / max(1e-6, np.abs(audio).max()), silence])
    sf.write(path, resample(signal, SAMPLE_RATE, 48000), 48000, subtype="PCM_16")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tts):
    """The app on a free 127.0.0.1 port with one phoneme model; yields (url, studio, detector, wavs)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt install chromium)")
    import app
    from wakeword.studio import Studio

    root = tmp_path_factory.mktemp("studio")
    detector = get_family("phoneme").build_model(DetectorConfig(family="phoneme", wake_words=(WORD,)))
    peaks = [float(score_array(detector, np.pad(tts(t, accent="en-GB-x-rp"), 8000))[1].max()) for t in (WORD, NEGATIVE)]
    # between this voice's wake word and its negative: the geometric mean of their probabilities, as a logit
    threshold = float(logit(np.sqrt(probability(peaks[0]) * probability(peaks[1]))))
    detector.config = detector.config.replace(thresholds={WORD: threshold})
    save_detector(detector, root / "models" / MODEL)
    wavs = {text: write_loop_wav(root / f"{kind}.wav", tts(text)) for kind, text in (("pos", WORD), ("neg", NEGATIVE))}
    studio = Studio(root)
    port = free_port()
    blocks = app.launch(studio, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", studio, detector, wavs, blocks
    finally:
        blocks.close()


@pytest.fixture(scope="module")
def playwright_driver():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        yield driver


def open_browser(driver, wav: Path, url: str):
    """A fresh Chromium whose microphone plays `wav` in a loop; returns (browser, page)."""
    browser = driver.chromium.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"]
    )
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#record-audio .record-button", timeout=30_000)
    return browser, page


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def wait_for(condition, timeout_seconds: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_seconds} s waiting for {what}")


def indicator(page) -> tuple[str, int, str]:
    box = page.locator("#wakeword-indicator")
    return box.get_attribute("data-state"), int(box.get_attribute("data-count")), box.inner_text()


def listen(page, seconds: float, stop_when=None) -> tuple[str, int, str]:
    """Open the Detect tab, stream the fake microphone for up to `seconds`; returns the last indicator."""
    page.get_by_role("tab", name="Detect live").click()
    page.wait_for_selector("#detect-mic .record-button", timeout=15_000)
    time.sleep(2.0)  # let the tab's model and threshold updates land before the stream starts
    for _ in range(3):  # a stream started while the page is still busy may never send; start it again
        page.click("#detect-mic .record-button")
        try:
            wait_for(lambda: indicator(page)[0] != "idle", 8, "the first scored chunk")
            break
        except AssertionError:
            page.click("#detect-mic .stop-button")
            time.sleep(1.0)
    assert indicator(page)[0] != "idle", "the live stream never started"
    deadline, state = time.monotonic() + seconds, indicator(page)
    while time.monotonic() < deadline and not (stop_when and stop_when(state)):
        time.sleep(0.25)
        state = indicator(page)
    return state


@pytest.mark.slow
@needs_chromium
def test_record_detect_train_in_a_real_browser(served, playwright_driver):
    url, studio, detector, wavs, _ = served
    browser, page = open_browser(playwright_driver, wavs[WORD], url)
    try:
        # Record: 3 s of the looping wake word, saved into the data set with its label
        page.click("#record-audio .record-button")
        time.sleep(3.0)
        page.click("#record-audio .stop-button")
        page.wait_for_selector('#record-audio button[aria-label="Play"]', timeout=15_000)

        def saved():
            page.click("#record-save")
            time.sleep(1.0)
            return "Saved clip" in page.inner_text("#record-status")

        wait_for(saved, 20, "the recording to be saved", interval=0)
        clips = DataSet(studio.dataset_dir("my-recordings")).clips()
        assert len(clips) == 1 and clips[0].labels == {WORD: 1} and clips[0].source == "recorded"
        assert 2.0 < clips[0].duration_seconds < 4.5
        assert clips[0].id in page.inner_text("#record-clips")
        recorded = DataSet(studio.dataset_dir("my-recordings")).load(clips[0])
        threshold = detector.config.threshold(WORD)
        assert score_array(detector, recorded)[1].max() >= threshold  # the wake word itself was recorded
        screenshot(page, "record")

        # Detect: the looping wake word fires. In 2 of 3 full-suite runs of one CI session the first live stream
        # never heard the word (highest score -9.9 and -5.8, while the same fake microphone's recording above
        # scored over the threshold); it never failed alone or under load since. One restart of the stream is
        # allowed, and warned of (pytest lists warnings), so that a CI log shows how often it is needed.
        state, count, text = listen(page, 20, stop_when=lambda s: s[0] == "fired")
        if state != "fired":
            warnings.warn(f"live stream restarted after 20 s without a detection: {text!r}", stacklevel=1)
            page.click("#detect-mic .stop-button")
            time.sleep(1.0)
            state, count, text = listen(page, 20, stop_when=lambda s: s[0] == "fired")
        assert count >= 1 and state == "fired" and WORD in text, text
        time.sleep(1.0)  # one more plot refresh
        page.click("#detect-mic .stop-button")
        time.sleep(1.0)  # the plot finishes drawing once updates stop
        screenshot(page, "detect")

        # Listen and correct: the activation is listed with its audio; "wrong" saves it as a negative clip
        wait_for(lambda: WORD in page.inner_text("#correct-table"), 15, "the activation in the list")
        page.wait_for_selector('#correct-play button[aria-label="Play"]', timeout=15_000)
        page.click("#correct-wrong")
        wait_for(lambda: "saved as **wrong**" in page.inner_text("#correct-status") or "saved as wrong"
                 in page.inner_text("#correct-status"), 15, "the verdict to be saved")  # fmt: skip
        (corrected,) = DataSet(studio.dataset_dir("corrections")).clips()
        assert corrected.labels == {WORD: 0} and corrected.source == "corrected"
        assert "wrong" in page.inner_text("#correct-table")
        screenshot(page, "correct")

        # Train: a tiny e2e model from the recording plus a little synthetic speech, with the progress bar
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-recipe input").click()
        page.get_by_role("option", name="e2e", exact=True).click()
        page.locator("#train-name input, #train-name textarea").first.fill("tiny-e2e")
        settings = "data.synth.n_positives=6\ndata.synth.n_confusables=4\ndata.synth.n_generic=4\n"
        page.locator("#train-extra textarea").fill(
            settings + "data.synth.qc=false\ntrain.epochs=2\ntrain.batch_size=16\nevaluate.calibration_minutes=0"
        )
        page.click("#train-start")
        wait_for(lambda: "Saved model" in page.inner_text("#train-status"), 90, "training to finish")
        assert studio.models() == ["hey-computer-phoneme", "tiny-e2e"]
        assert "FA/h" in page.inner_text("#train-metrics")
        page.wait_for_selector("#train-det img", timeout=10_000)
        # the new model is offered for a cascade at once (the phoneme model never is: a cascade wakes transfer/e2e)
        wait_for(lambda: page.input_value("#cascade-model input") == "tiny-e2e", 10, "the cascade list to refresh")
        screenshot(page, "train")

        # Models: the trained model's metrics, DET curve and config
        page.get_by_role("tab", name="Models").click()
        page.locator("#models-pick input").click()
        page.get_by_role("option", name="tiny-e2e").click()
        wait_for(lambda: "e2e" in page.inner_text("#models-config"), 15, "the model's config")
        page.click("#models-export")  # the ONNX export, downloaded as a zip the runtime can run
        link = page.locator("#models-download a").first
        link.wait_for(timeout=60_000)
        screenshot(page, "models")
        with page.expect_download() as download:
            link.click()
        with zipfile.ZipFile(download.value.path()) as archive:
            assert sorted(archive.namelist()) == ["tiny-e2e/model.onnx", "tiny-e2e/runtime.json"]

        # Retrain the trained model with the correction, in place, then roll it back
        page.get_by_role("tab", name="Detect live").click()
        page.locator("#detect-model input").click()
        page.get_by_role("option", name="tiny-e2e").click()
        model_dir = studio.model_dir("tiny-e2e")
        trained = (model_dir / "model.safetensors").read_bytes()
        time.sleep(1.0)
        page.click("#correct-retrain")
        wait_for(lambda: "Retrained" in page.inner_text("#correct-status"), 90, "retraining to finish")
        assert (model_dir / "previous" / "model.safetensors").read_bytes() == trained
        assert (model_dir / "model.safetensors").read_bytes() != trained
        page.click("#correct-rollback")
        wait_for(lambda: "Rolled" in page.inner_text("#correct-status"), 15, "the rollback")
        assert (model_dir / "model.safetensors").read_bytes() == trained
    finally:
        browser.close()


@pytest.mark.slow
@needs_chromium
def test_detect_stays_quiet_on_a_negative_sentence(served, playwright_driver):
    url, _, _, wavs, _ = served
    browser, page = open_browser(playwright_driver, wavs[NEGATIVE], url)
    try:
        state, count, text = listen(page, 9)  # the 5.5 s sentence loops past at least once
        assert count == 0 and state == "listening" and "no detection yet" in text, text
    finally:
        browser.close()


@pytest.mark.slow
@needs_chromium
def test_server_is_local_and_refuses_oversized_uploads(served):
    import urllib.error
    import urllib.request

    url, _, _, _, blocks = served
    assert blocks.server_name == "127.0.0.1" and blocks.max_file_size == 10 * 1024**2
    body = b'--x\r\nContent-Disposition: form-data; name="files"; filename="big.wav"\r\n\r\n'
    body += b"\0" * (11 * 1024**2) + b"\r\n--x--\r\n"
    request = urllib.request.Request(
        f"{url}gradio_api/upload", body, {"Content-Type": "multipart/form-data; boundary=x"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
