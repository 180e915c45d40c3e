"""The studio functions behind the Gradio app, without a browser: clips, limits, names, live scoring, models."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from wakeword.audio import SAMPLE_RATE, resample
from wakeword.checkpoint import save_detector
from wakeword.data.clips import DataSet
from wakeword.live import LiveSession, read_stream_chunk
from wakeword.metrics import logit, probability
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig
from wakeword.stream import score_array
from wakeword.studio import Studio, StudioError, StudioLimits, inside, safe_name

WORD = "hey computer"


@pytest.fixture
def studio(tmp_path):
    return Studio(tmp_path / "data")


def pcm16(audio: np.ndarray, rate: int = 48000) -> tuple[int, np.ndarray]:
    """What the browser sends: int16 samples at its own rate."""
    return rate, (resample(audio, SAMPLE_RATE, rate) * 32767).astype(np.int16)


def padded(audio: np.ndarray, before: float = 0.5, after: float = 1.0) -> np.ndarray:
    zeros = np.zeros
    return np.concatenate(
        [zeros(int(before * SAMPLE_RATE), np.float32), audio, zeros(int(after * SAMPLE_RATE), np.float32)]
    )


# -- names -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["my-recordings", "take 2", "Jarvis_v1.0", "a"])
def test_safe_name_accepts_plain_names(name):
    assert safe_name(f"  {name} ") == name


@pytest.mark.parametrize("name", ["", "  ", "..", "../x", "a/../b", "/etc", "a/b", "a\\b", ".hidden", "x\0y", "x" * 65])
def test_safe_name_refuses_paths_and_odd_names(name):
    with pytest.raises(StudioError):
        safe_name(name)


def test_inside_refuses_a_symlink_out_of_the_data_folder(studio, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, studio.root / "datasets" / "sneaky")
    with pytest.raises(StudioError, match="outside the data folder"):
        studio.dataset_dir("sneaky")
    with pytest.raises(StudioError):
        inside(studio.root, "..", "outside")
    assert inside(studio.root, "datasets", "fine") == studio.root / "datasets" / "fine"


def test_unsafe_names_write_nothing_outside(studio, tts, tmp_path):
    for bad in ("../escape", "/tmp/escape", "a/b"):
        with pytest.raises(StudioError):
            studio.save_clip(bad, WORD, "wake word", pcm16(tts(WORD)))
        with pytest.raises(StudioError):
            studio.model_dir(bad)
    assert not (tmp_path / "escape").exists() and not (studio.root.parent / "escape").exists()
    assert studio.datasets() == []


# -- recording -------------------------------------------------------------------------------------------------
def test_save_clip_with_each_label(studio, tts):
    first = studio.save_clip("rec", "Hey  Computer", "wake word", pcm16(tts(WORD)), speaker="ana")
    studio.save_clip("rec", WORD, "not wake word", pcm16(tts("hey commuter")))
    studio.save_clip("rec", WORD, "background", (16000, np.random.default_rng(0).normal(0, 0.05, 16000)))
    clips = {c.id: c for c in DataSet(studio.dataset_dir("rec")).clips()}
    assert len(clips) == 3 and studio.datasets() == ["rec"]
    clip = clips[first]
    assert clip.labels == {WORD: 1} and clip.source == "recorded" and clip.speaker == "ana"
    assert clip.duration_seconds == pytest.approx(len(tts(WORD)) / SAMPLE_RATE, abs=0.01)
    kinds = sorted((c.meta["kind"], c.labels[WORD]) for c in clips.values())
    assert kinds == [("background", 0), ("not wake word", 0), ("wake word", 1)]
    assert "1 wake word, 1 not wake word, 1 background" in studio.dataset_summary("rec")


def test_uploaded_file_is_stored_at_16k(studio, tts, tmp_path):
    path = tmp_path / "upload.wav"
    sf.write(path, np.stack([resample(tts(WORD), SAMPLE_RATE, 44100)] * 2, axis=1), 44100)  # stereo 44.1 kHz
    clip_id = studio.save_clip("rec", WORD, "wake word", str(path))
    rate, audio = studio.clip_audio("rec", clip_id)
    assert rate == SAMPLE_RATE and len(audio) == pytest.approx(len(tts(WORD)), abs=20)


@pytest.mark.parametrize("seconds", [0.2, 5.5])
def test_length_limits_refuse_with_a_clear_message_and_write_nothing(studio, seconds):
    audio = np.random.default_rng(1).normal(0, 0.1, int(seconds * 48000)).astype(np.float32)
    with pytest.raises(StudioError, match=rf"{seconds:.2f} s long; clips must be 0.3-5 s"):
        studio.save_clip("rec", WORD, "wake word", (48000, audio))
    assert studio.clips_table("rec") == []


def test_upload_size_limit_and_unreadable_files(tmp_path, tts):
    studio = Studio(tmp_path / "data", limits=StudioLimits(max_upload_bytes=20_000))
    big, broken = tmp_path / "big.wav", tmp_path / "broken.wav"
    sf.write(big, tts(WORD), SAMPLE_RATE)  # ~30 kB of 16-bit PCM
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    with pytest.raises(StudioError, match="the limit is"):
        studio.save_clip("rec", WORD, "wake word", str(big))
    with pytest.raises(StudioError, match="cannot read the recording"):
        studio.save_clip("rec", WORD, "wake word", str(broken))
    with pytest.raises(StudioError, match="no recording"):
        studio.save_clip("rec", WORD, "wake word", None)
    with pytest.raises(StudioError, match="label"):
        studio.save_clip("rec", WORD, "maybe", pcm16(tts(WORD)))
    assert studio.datasets() == []


def test_list_play_and_delete(studio, tts):
    said = [tts(WORD, speed=s) for s in (0.8, 1.0, 1.2)]
    ids = [studio.save_clip("rec", WORD, "wake word", pcm16(audio)) for audio in said]
    assert [row[0] for row in studio.clips_table("rec")] == ids[::-1]  # newest first
    rate, audio = studio.clip_audio("rec", ids[1])
    n = min(len(audio), len(said[1]))
    assert rate == SAMPLE_RATE and abs(len(audio) - len(said[1])) <= 2
    assert np.corrcoef(audio[:n], said[1][:n])[0, 1] > 0.999
    studio.delete_clip("rec", ids[1])
    assert [row[0] for row in studio.clips_table("rec")] == [ids[2], ids[0]]
    assert not (studio.dataset_dir("rec") / "audio" / f"{ids[1]}.wav").exists()
    with pytest.raises(StudioError):
        studio.delete_clip("rec", ids[1])
    with pytest.raises(StudioError):
        studio.clip_audio("rec", "../clips.jsonl")


# -- live scoring ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def e2e_detector():
    import torch

    torch.manual_seed(0)
    return get_family("e2e").build_model(DetectorConfig(family="e2e", wake_words=(WORD,))).eval()


@pytest.fixture(scope="module")
def phoneme_detector():
    return get_family("phoneme").build_model(DetectorConfig(family="phoneme", wake_words=(WORD,)))


def test_live_chunks_score_like_the_whole_signal(phoneme_detector, tts):
    audio = padded(tts(WORD))
    live = LiveSession(phoneme_detector, "m", threshold=0.5)
    for start in range(0, len(audio), 1600):  # 0.1 s chunks, as the browser sends them
        live.feed(SAMPLE_RATE, (audio[start : start + 1600] * 32767).astype(np.int16))
    times, scores = score_array(phoneme_detector, (audio * 32767).astype(np.int16) / 32768)
    assert scores.max() > 100 * np.median(scores)  # the word stands out: a real signal to compare
    n = len(live.times)
    assert n == len(audio) // 1600
    np.testing.assert_allclose(np.array(live.scores), scores[:n], atol=1e-5)
    np.testing.assert_allclose(np.array(live.times), times[:n])
    frame = live.plot_frame()
    assert set(frame["series"]) == {WORD, "threshold"} and len(frame) == n + 2


def test_threshold_change_keeps_the_time_axis(e2e_detector, tts):
    live = LiveSession(e2e_detector, "m", threshold=0.5)
    live.feed(*pcm16(padded(tts(WORD))))
    before = live.times[-1]
    live.set_threshold(0.25)
    live.feed(*pcm16(np.zeros(8000, np.float32)))
    assert live.threshold == 0.25 and live.times[-1] == pytest.approx(before + 0.5, abs=0.11)


def write_browser_chunks(path, chunks: list[np.ndarray], rate: int = 48000) -> None:
    """Like Gradio's recorder: the FIRST chunk's WAV header (data size of one chunk), then all chunks' PCM."""
    first = chunks[0].astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(first)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate,
             rate * 2, 2, 16) + b"data" + struct.pack("<I", len(first))  # fmt: skip
    path.write_bytes(header + b"".join(c.astype("<i2").tobytes() for c in chunks))


def test_stream_chunk_reads_past_the_stale_header(tmp_path):
    chunks = [np.full(4800, i * 100, np.int16) for i in range(3)]
    write_browser_chunks(tmp_path / "c.wav", chunks)
    rate, samples = read_stream_chunk(tmp_path / "c.wav", max_bytes=10**6)
    assert rate == 48000 and np.array_equal(samples, np.concatenate(chunks))
    with pytest.raises(StudioError, match="limit"):
        read_stream_chunk(tmp_path / "c.wav", max_bytes=1000)


def test_pushed_chunks_are_scored_in_order_in_the_background(phoneme_detector, tts, tmp_path):
    rate, audio = pcm16(padded(tts(WORD), after=0.5))
    live, direct = LiveSession(phoneme_detector, "m", 0.5), LiveSession(phoneme_detector, "m", 0.5)
    for i, start in enumerate(range(0, len(audio), 4800)):
        write_browser_chunks(tmp_path / f"{i}.wav", [audio[start : start + 4800]])
        live.push_file(tmp_path / f"{i}.wav")
    direct.feed(rate, audio)
    assert live.wait(30)
    live.close()
    np.testing.assert_allclose(np.array(live.scores), np.array(direct.scores), atol=1e-5)


def peak(detector, audio: np.ndarray) -> float:
    return float(score_array(detector, padded(audio))[1].max())


def between(positive: float, negative: float) -> float:
    """A threshold (logit) at the geometric mean of two peaks' probabilities."""
    return float(logit(np.sqrt(probability(positive) * probability(negative))))


def test_live_session_detects_the_wake_word_only(phoneme_detector, tts):
    """Threshold calibrated on one voice (geometric mean of its positive and negative peaks); tested on another."""
    negative_text = "the weather is nice today"
    level = between(peak(phoneme_detector, tts(WORD)), peak(phoneme_detector, tts(negative_text)))
    results = {}
    for text in (WORD, negative_text):
        live = LiveSession(phoneme_detector, "m", level)
        rate, audio = pcm16(padded(tts(text, accent="en-GB-x-rp", variant="m3")))
        for start in range(0, len(audio), 4800):
            live.feed(rate, audio[start : start + 4800])
        results[text] = live
    fired = results[WORD]
    assert len(fired.detections) == 1 and fired.detections[0].word == WORD
    assert fired.detections[0].score >= level and 0.5 < fired.detections[0].time_seconds < 2.6
    assert 'data-count="1"' in fired.indicator_html() and WORD in fired.events_text()
    assert results[negative_text].detections == [] and 'data-count="0"' in results[negative_text].indicator_html()


def test_live_activations_keep_their_audio_and_verdicts_land_labelled(studio, phoneme_detector, tts):
    level = between(peak(phoneme_detector, tts(WORD)), peak(phoneme_detector, tts("the weather is nice today")))
    live = LiveSession(phoneme_detector, "m", level)
    rate, audio = pcm16(padded(tts(WORD, accent="en-GB-x-rp", variant="m3")))
    for start in range(0, len(audio), 4800):
        live.feed(rate, audio[start : start + 4800])
    assert len(live.activations) == 1 and live.activations_table()[0][:3] == [
        1,
        round(live.detections[0].time_seconds, 1),
        WORD,
    ]
    kept = live.activation(1).audio
    fired_at = live.detections[0].time_seconds  # the 1.5 s window that fired, 0.25 s before it, 0.75 s after
    assert abs(len(kept) / SAMPLE_RATE - (fired_at + 0.75 - max(0.0, fired_at - 1.75))) < 0.01
    assert peak(phoneme_detector, kept) >= level  # the clip holds what fired

    clip_id = studio.correct(live, 1, "wrong")
    corrections = DataSet(studio.dataset_dir("corrections"))
    (clip,) = corrections.clips()
    assert clip.id == clip_id and clip.labels == {WORD: 0} and clip.source == "corrected" and clip.meta["model"] == "m"
    np.testing.assert_allclose(corrections.load(clip), kept, atol=1e-4)
    studio.correct(live, 1, "right")  # changed her mind: the clip is replaced, not added
    (clip,) = DataSet(studio.dataset_dir("corrections")).clips()
    assert clip.labels == {WORD: 1} and live.activations_table()[0][4] == "right"
    with pytest.raises(StudioError, match="no activation #7"):
        studio.correct(live, 7, "wrong")
    with pytest.raises(StudioError, match="verdict"):
        studio.correct(live, 1, "maybe")


# -- models, recipes, training ---------------------------------------------------------------------------------
def test_model_listing_and_info(studio, e2e_detector):
    assert studio.models() == []
    model = e2e_detector
    model.config = model.config.replace(thresholds={WORD: 0.3})
    save_detector(model, studio.model_dir("first"))
    (studio.root / "models" / "not-a-model").mkdir()
    assert studio.models() == ["first"]
    info = studio.model_info("first")
    assert info.config["family"] == "e2e" and info.det_png is None and "No held-out metrics" in info.metrics_markdown
    assert studio.threshold("first") == pytest.approx(0.3)
    assert studio.detector("first") is studio.detector("first")  # loaded once
    with pytest.raises(StudioError):
        studio.model_info("missing")


def test_export_gives_a_zip_the_runtime_runs(studio, e2e_detector, phoneme_detector, tmp_path):
    import zipfile

    import torch

    from wakeword.runtime import load_runtime

    save_detector(e2e_detector, studio.model_dir("first"))
    archive = studio.export("first")
    assert archive == studio.root / "exports" / "first.zip"
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == ["first/model.onnx", "first/runtime.json"]
        opened.extractall(tmp_path / "unzipped")
    window = np.random.default_rng(0).standard_normal((2, e2e_detector.config.window_samples)).astype(np.float32)
    with torch.no_grad():
        expected = e2e_detector(torch.from_numpy(window)).numpy()
    got = load_runtime(tmp_path / "unzipped" / "first").logits(window)
    assert np.abs(got - expected).max() <= 1e-4
    assert studio.export("first", int8=True).name == "first-int8.zip"
    save_detector(phoneme_detector, studio.model_dir("sphinx"))
    with pytest.raises(StudioError, match="PocketSphinx"):
        studio.export("sphinx")
    assert not (studio.root / "exports" / "sphinx.zip").exists()


def test_recipes_and_safe_overrides(studio, tts):
    names = studio.recipes()
    assert "quickstart" in names and "compare" not in names  # compare.yaml is not a training recipe
    studio.save_clip("rec", WORD, "wake word", pcm16(tts(WORD)))
    recipe = studio.build_recipe("quickstart", "Hey Computer", "rec", family="e2e", overrides=["train.epochs=3"])
    assert recipe.wake_words == (WORD,) and recipe.model.family == "e2e" and recipe.model.head == {}
    assert recipe.data.train == (str(studio.dataset_dir("rec")),) and recipe.train.epochs == 3
    assert recipe.data.synth.out.startswith(str(studio.root / "synth"))
    top = studio.build_recipe("quickstart", WORD, "rec", family="transfer", trainable="top-k")
    assert top.model.trainable == "top-k"
    for bad in ("data.train=[/etc]", "data.synth.out=/tmp/x", "model.encoder=/somewhere", "data.noise_dirs=[/]"):
        with pytest.raises(StudioError, match="cannot be changed"):
            studio.build_recipe("quickstart", WORD, "rec", overrides=[bad])
    with pytest.raises(StudioError, match="unknown recipe"):
        studio.build_recipe("../quickstart", WORD, "rec")


def test_cascade_recipe_goes_in_front_of_a_trained_model_of_the_studio(studio, e2e_detector, tts):
    studio.save_clip("rec", WORD, "wake word", pcm16(tts(WORD)))
    save_detector(e2e_detector, studio.model_dir("first"))
    recipe = studio.build_cascade_recipe("first", "rec", overrides=["train.epochs=3"])
    assert recipe.model.family == "cascade" and recipe.model.cascade.stage2_model == str(studio.model_dir("first"))
    assert recipe.wake_words == (WORD,) and recipe.data.train == (str(studio.dataset_dir("rec")),)
    assert recipe.train.epochs == 3 and recipe.data.synth.out.startswith(str(studio.root / "synth"))
    # a cascade is not offered as a stage 2, nor taken as one
    stage = e2e_detector.config.to_dict()
    head = {"stage1": stage, "stage2": stage, "gate": {"logits": {WORD: 0.0}}}
    cascade = get_family("cascade").build_model(DetectorConfig(family="cascade", wake_words=(WORD,), head=head))
    save_detector(cascade, studio.model_dir("front"))
    save_detector(get_family("phoneme").build_model(DetectorConfig("phoneme", (WORD,))), studio.model_dir("sphinx"))
    assert studio.models() == ["first", "front", "sphinx"] and studio.cascade_candidates() == ["first"]
    with pytest.raises(StudioError, match="already a cascade"):
        studio.build_cascade_recipe("front", "rec")
    with pytest.raises(StudioError, match="a phoneme detector; a cascade wakes a transfer or e2e one"):
        studio.build_cascade_recipe("sphinx", "rec")
    with pytest.raises(StudioError, match="missing"):
        studio.build_cascade_recipe("missing", "rec")
    with pytest.raises(StudioError, match="cannot be changed"):
        studio.build_cascade_recipe("first", "rec", overrides=["model.cascade.stage2_model=/etc"])


def test_train_tiny_model_reports_progress_and_metrics(studio, tts):
    voices = [("en-US", ""), ("en-GB-x-rp", "f2"), ("en-029", "m3"), ("en-US", "f4")]
    for accent, variant in voices:
        studio.save_clip("rec", WORD, "wake word", pcm16(tts(WORD, accent=accent, variant=variant)))
        studio.save_clip("rec", WORD, "not wake word", pcm16(tts("hello there", accent=accent, variant=variant)))
    small = ["data.synth.n_positives=6", "data.synth.n_confusables=4", "data.synth.n_generic=4",
             "data.synth.qc=false", "train.epochs=2", "train.batch_size=16",
             "evaluate.calibration_minutes=0"]  # fmt: skip
    recipe = studio.build_recipe("e2e", WORD, "rec", overrides=small)
    steps = []
    info = studio.train("tiny", recipe, lambda fraction, message: steps.append((fraction, message)))
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum("epoch" in m for _, m in steps) >= 1
    shown = [m.split(":")[0] for _, m in steps]  # the progress bar names each stage as it starts
    assert [s for s in shown if s in ("synthesis", "fitting", "calibration", "test")] == [
        "synthesis", "fitting", *["fitting"] * sum("epoch" in m for _, m in steps), "calibration", "test"
    ]  # fmt: skip
    assert studio.models() == ["tiny"] and info.det_png is not None and info.det_png.is_file()
    report = json.loads((studio.model_dir("tiny") / "report.json").read_text())
    assert list(report["stages"]) == ["synthesis", "fitting", "calibration", "test", "other", "total"]
    assert report["stages"]["total"] == pytest.approx(sum(list(report["stages"].values())[:-1]), abs=0.3)
    assert WORD in info.metrics_markdown and f"{report['words'][WORD]['frr']:.1%}" in info.metrics_markdown
    with pytest.raises(StudioError, match="exists"):
        studio.train("tiny", recipe)

    # Listen and correct: retrain in place with a correction, then roll back to the exact previous bytes
    with pytest.raises(StudioError, match="does not exist yet"):
        studio.retrain("tiny")
    DataSet.create(studio.dataset_dir("corrections")).add_audio(tts("hey commuter"), {WORD: 0}, "corrected")
    before = {n: (studio.model_dir("tiny") / n).read_bytes() for n in ("config.json", "model.safetensors")}
    detector = studio.detector("tiny")
    assert "1 correction(s)" in studio.retrain("tiny", progress=lambda f, m: steps.append((f, m)))
    assert (studio.model_dir("tiny") / "previous" / "model.safetensors").read_bytes() == before["model.safetensors"]
    assert studio.detector("tiny") is not detector  # the live detector reloads the retrained model
    assert "Rolled" in studio.rollback("tiny")
    assert {n: (studio.model_dir("tiny") / n).read_bytes() for n in before} == before
    with pytest.raises(StudioError, match="no previous version"):
        studio.rollback("tiny")
    save_detector(get_family("phoneme").build_model(DetectorConfig(family="phoneme", wake_words=(WORD,))),
                  studio.model_dir("untrained"))  # fmt: skip
    with pytest.raises(StudioError, match=r"cannot retrain 'untrained'.*recipe"):
        studio.retrain("untrained")


# -- names from the browser never reach outside the data folder; the server is local by default ---------------
UNSAFE_NAMES = ["../escape", "/tmp/escape", "a/b", "..", "sub/../../escape", "x\0y"]


@pytest.mark.parametrize("bad", UNSAFE_NAMES)
def test_every_name_the_browser_sends_is_checked(studio, tts, tmp_path, bad):
    audio = pcm16(tts(WORD))
    studio.save_clip("rec", WORD, "wake word", audio)
    recipe = studio.build_recipe("quickstart", WORD, "rec")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    calls = {
        "save_clip data set": lambda: studio.save_clip(bad, WORD, "wake word", audio),
        "save_clip speaker": lambda: studio.save_clip("rec", WORD, "wake word", audio, speaker=bad),
        "clip_audio data set": lambda: studio.clip_audio(bad, "x"),
        "clip_audio clip": lambda: studio.clip_audio("rec", bad),
        "delete_clip data set": lambda: studio.delete_clip(bad, "x"),
        "delete_clip clip": lambda: studio.delete_clip("rec", bad),
        "clips_table": lambda: studio.clips_table(bad),
        "build_recipe data set": lambda: studio.build_recipe("quickstart", WORD, bad),
        "build_recipe recipe": lambda: studio.build_recipe(bad, WORD, "rec"),
        "train": lambda: studio.train(bad, recipe),
        "model_info": lambda: studio.model_info(bad),
        "threshold": lambda: studio.threshold(bad),
        "detector": lambda: studio.detector(bad),
        "export": lambda: studio.export(bad),
    }
    for what, call in calls.items():
        try:
            result = call()
        except StudioError:
            continue
        assert what == "clips_table" and result == [], what  # a table of a data set that cannot exist is empty
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written or removed


def test_app_serves_on_localhost_only_unless_asked(tmp_path):
    """`python app.py` with no --host: the listening socket is bound to 127.0.0.1 (read from the kernel's
    socket table), not to every interface."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app_py = Path(__file__).resolve().parent.parent / "app.py"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(app_py), "--data-root", str(tmp_path), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip

    def listening() -> list[str]:
        """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on `port`."""
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    found.append(local.rsplit(":", 1)[0])
        return found

    try:
        deadline = time.monotonic() + 120
        while not listening() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert listening() == ["0100007F"]  # 127.0.0.1 (little-endian hex); 0.0.0.0 would be 00000000
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_room_recording_is_negative_audio_not_a_clip(studio, tts):
    from wakeword.studio import ROOM, calibration_markdown

    studio.save_clip("rec", WORD, "wake word", pcm16(tts(WORD)))
    talk = np.concatenate([tts("the kettle is boiling again"), tts("where did I put the keys")] * 4)
    assert len(talk) > studio.limits.max_clip_seconds * SAMPLE_RATE  # too long for a clip, fine for a room
    with pytest.raises(StudioError, match="clips must be"):
        studio.save_clip("rec", WORD, "not wake word", pcm16(talk))
    room_id = studio.save_clip("rec", WORD, ROOM, pcm16(talk))
    clip = next(c for c in DataSet(studio.dataset_dir("rec")).clips() if c.id == room_id)
    assert clip.labels == {} and clip.meta["kind"] == ROOM and clip.speaker == "me"
    assert studio.room_recordings("rec") == [studio.dataset_dir("rec") / clip.path]
    assert "min of room recording" in studio.dataset_summary("rec")
    recipe = studio.build_recipe("quickstart", WORD, "rec")
    assert recipe.data.negative_audio == (str(studio.dataset_dir("rec") / clip.path),)
    warning = {"words": {WORD: {"negative_hours": 0.02, "warning": "calibrated on only 1.2 min of negative audio"}}}
    assert "Warning: calibrated on only 1.2 min" in calibration_markdown(warning)
    near = {"words": {WORD: {"negative_hours": 0.6, "n_near_misses": 40, "accepted": 3}}}
    assert "36.0 min of negative audio; it accepts 3 of 40 synthetic near misses" in calibration_markdown(near)
