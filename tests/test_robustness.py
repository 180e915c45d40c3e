"""Issue #9, robustness: every way audio enters (load_audio, `data import`, `score`, `detect`, `evaluate`,
`mine`, `train`, the app's upload) given broken, odd or huge files; model files that must not be trusted; the
commands that take no audio (`synth`, `listen`) given bad arguments.

A bad input ends in a clear error naming the file and the reason (AudioError, StudioError, ModelError, or
exit status 2 with one line `wakeword CMD: error: ...`) or is handled correctly; never a traceback from inside
a library, never a partial write. The files are made here by `audio_file(kind, folder)`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from wakeword.audio import SAMPLE_RATE, AudioError, load_audio
from wakeword.checkpoint import ModelError, load_detector, save_detector
from wakeword.cli import main
from wakeword.data.clips import Clip, DataSet
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig
from wakeword.studio import Studio, StudioError

WORD = "hey computer"
TONE_SECONDS = 1.0

# kind -> what the error says (besides the file's name)
BAD = {
    "corrupt_wav": "unreadable",
    "truncated_wav": "truncated WAV",
    "corrupt_flac": "unreadable or truncated",
    "truncated_flac": "unreadable or truncated",
    "zero_length": "empty file",
    "one_sample": "too short",
    "nan": "NaN or infinite",
    "inf": "NaN or infinite",
    "directory": "is a directory",
    "missing": "no such file",
}
GOOD = ("pcm_u8", "pcm_24", "float32", "rate_8k", "stereo_48k")  # converted to 16 kHz mono float32


def tone(seconds: float = TONE_SECONDS, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))).astype(np.float32)


def audio_file(kind: str, folder: Path) -> Path:
    """A file of the given kind (a key of BAD, or one of GOOD) in `folder`; 1 s of tone where there is audio."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.{'flac' if kind.endswith('flac') or kind == 'pcm_24' else 'wav'}"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "zero_length":
        path.write_bytes(b"")
    elif kind == "one_sample":
        sf.write(path, np.array([0.1], np.float32), SAMPLE_RATE, subtype="PCM_16")
    elif kind in ("nan", "inf"):
        audio = tone()
        audio[SAMPLE_RATE // 2] = np.nan if kind == "nan" else np.inf
        sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    elif kind == "corrupt_wav":  # a RIFF header whose format chunk is garbage
        path.write_bytes(b"RIFF\x24\x10\x00\x00WAVEfmt " + bytes(range(256)) * 16)
    elif kind in ("truncated_wav", "truncated_flac", "corrupt_flac"):
        sf.write(path, tone(), SAMPLE_RATE, format="FLAC" if kind.endswith("flac") else "WAV", subtype="PCM_16")
        data = bytearray(path.read_bytes())
        if kind == "corrupt_flac":  # frames overwritten in the middle: the decoder loses sync there
            data[len(data) // 2 : len(data) // 2 + 300] = b"\xab" * 300
        else:  # a download or copy cut off half way
            del data[len(data) // 2 :]
        path.write_bytes(bytes(data))
    elif kind == "pcm_u8":
        sf.write(path, tone(), SAMPLE_RATE, subtype="PCM_U8")
    elif kind == "pcm_24":
        sf.write(path, tone(), SAMPLE_RATE, subtype="PCM_24", format="FLAC")
    elif kind == "float32":
        sf.write(path, tone(), SAMPLE_RATE, subtype="FLOAT")
    elif kind == "rate_8k":
        sf.write(path, tone(rate=8000), 8000, subtype="PCM_16")
    elif kind == "stereo_48k":
        mono = tone(rate=48000)
        sf.write(path, np.stack([mono, 0.5 * mono], axis=1), 48000, subtype="PCM_16")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


def sparse_wav(path: Path, seconds: float, rate: int = SAMPLE_RATE) -> Path:
    """A valid 16-bit mono WAV of `seconds` of silence, written as a sparse file: instant, no disk used."""
    n_bytes = int(seconds * rate) * 2
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header = b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", n_bytes)
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + n_bytes)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Scoring a few windows is faster on one thread, and does not fight other jobs for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    detector = get_family("e2e").build_model(DetectorConfig(family="e2e", wake_words=(WORD,)))
    return save_detector(detector, tmp_path_factory.mktemp("model") / "e2e")


def run_cli(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error_line(code: int, err: str, command: str, *names: str) -> str:
    """Exit status 2, no traceback, and the last stderr line is `wakeword COMMAND: error: ...` naming `names`."""
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"wakeword {command}: error: "), last
    for name in names:
        assert name in last, last
    return last


# -- load_audio ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BAD)
def test_load_audio_refuses_bad_files_by_name_and_reason(tmp_path, kind):
    path = audio_file(kind, tmp_path)
    with pytest.raises(AudioError, match=re.escape(f"{path}: ") + ".*" + re.escape(BAD[kind])):
        load_audio(path)


@pytest.mark.parametrize("kind", GOOD)
def test_load_audio_converts_every_sample_format_rate_and_layout(tmp_path, kind):
    audio = load_audio(audio_file(kind, tmp_path))
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(len(audio) - SAMPLE_RATE) <= 1
    peak = 0.5 * (0.75 if kind == "stereo_48k" else 1.0)  # the channels (full and half level) are averaged
    assert abs(np.abs(audio).max() - peak) < 0.02


def test_a_streamed_wav_with_an_unknown_length_is_not_truncation(tmp_path):
    """Writers that cannot seek back (pipes, live recorders) leave the data size 0xFFFFFFFF: all is read."""
    path = tmp_path / "piped.wav"
    sf.write(path, tone(), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert len(load_audio(path)) == SAMPLE_RATE


def test_a_header_with_an_absurd_sample_rate_is_corruption(tmp_path):
    """Read at 1 Hz, 2 kB of samples would resample to 16000 times as many."""
    path = tmp_path / "slow.wav"
    sf.write(path, tone(0.1), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 1)  # the format chunk's sample rate
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"slow\.wav: implausible sample rate 1 Hz"):
        load_audio(path)


def _wav_header(channels: int, rate: int, bits: int, tag: int, declared: int, payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8 % 2**32, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(payload))
        + b"WAVEfmt \x10\x00\x00\x00"
        + fmt
        + b"data"
        + (struct.pack("<I", declared) + payload)
    )


def _valid_files() -> list[bytes]:
    import io

    files = []
    for fmt, subtype in (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("WAV", "PCM_U8")):
        buffer = io.BytesIO()
        sf.write(buffer, tone(0.1), SAMPLE_RATE, format=fmt, subtype=subtype)
        files.append(buffer.getvalue())
    return files


VALID_FILES = _valid_files()
fuzzed_wav = st.builds(
    _wav_header,
    channels=st.integers(0, 9),
    rate=st.one_of(st.sampled_from([8000, 16000, 44100, 48000]), st.integers(0, 2**32 - 1)),
    bits=st.sampled_from([0, 1, 7, 8, 16, 24, 32, 64]),
    tag=st.sampled_from([0, 1, 2, 3, 6, 7, 0xFFFE]),
    declared=st.one_of(st.integers(0, 10_000), st.just(0xFFFFFFFF)),
    payload=st.binary(max_size=4096),
)


@st.composite
def mutated_file(draw) -> bytes:
    """A valid WAV or FLAC with some bytes overwritten and maybe cut short."""
    data = bytearray(draw(st.sampled_from(VALID_FILES)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=6)):
        data[position] = value
    return bytes(data[: draw(st.integers(1, len(data)))])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.one_of(st.binary(max_size=2048), fuzzed_wav, mutated_file()), suffix=st.sampled_from([".wav", ".flac"]))
def test_any_bytes_load_as_finite_16k_mono_or_raise_audio_error(fuzz_dir, data, suffix):
    path = fuzz_dir / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        audio = load_audio(path)
    except AudioError as error:
        assert str(error).startswith(f"{path}: ")
        return
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) >= 400 and np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def test_two_hour_file_loads_in_one_copy_of_memory_or_is_refused_unread(tmp_path):
    path = sparse_wav(tmp_path / "two-hours.wav", 2 * 3600)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"two-hours\.wav: too long \(7200\.0 s; at most"):
            load_audio(path, max_seconds=10)
        refused_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        audio = load_audio(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused_peak < 1_000_000  # the header said 2 hours: nothing was decoded
    assert len(audio) == 2 * 3600 * SAMPLE_RATE and not audio.any()
    assert peak < 1.05 * audio.nbytes  # 460 MB of samples, no second copy of them


# -- wakeword data import -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in BAD if k not in ("directory", "missing")])
def test_data_import_skips_bad_files_by_name_and_keeps_the_rest(tmp_path, capsys, kind):
    src = tmp_path / "src"
    audio_file("float32", src)
    bad = audio_file(kind, src)
    code, out, err = run_cli(capsys, "data", "import", src, "--to", tmp_path / "ds", "--label", WORD)
    assert code == 1 and "imported 1 clip(s)" in out and "1 file(s) skipped" in out
    assert f"skipped {bad}: " in err and BAD[kind] in err and "Traceback" not in err
    dataset = DataSet(tmp_path / "ds")
    assert len(dataset) == 1 and dataset.check() == []  # nothing half-written, no orphan audio


def test_data_import_of_a_missing_folder_or_a_file_is_a_clear_error(tmp_path, capsys):
    a_file = audio_file("float32", tmp_path)
    for source in (tmp_path / "missing", a_file):
        code, _, err = run_cli(capsys, "data", "import", source, "--to", tmp_path / "ds", "--label", WORD)
        assert_error_line(code, err, "data", str(source), "not a folder")
    (tmp_path / "src" / "sub.wav").mkdir(parents=True)  # a folder named like audio is not a file to import
    code, out, _ = run_cli(capsys, "data", "import", tmp_path / "src", "--to", tmp_path / "ds", "--label", WORD)
    assert code == 0 and "imported 0 clip(s)" in out


@pytest.mark.parametrize("kind", GOOD)
def test_data_import_converts_good_files(tmp_path, capsys, kind):
    audio_file(kind, tmp_path / "src")
    code, _, _ = run_cli(capsys, "data", "import", tmp_path / "src", "--to", tmp_path / "ds", "--label", WORD)
    dataset = DataSet(tmp_path / "ds")
    (clip,) = dataset.clips()
    assert code == 0 and clip.duration_seconds == pytest.approx(TONE_SECONDS, abs=1e-3)
    assert (
        sf.info(dataset.audio_path(clip)).samplerate == SAMPLE_RATE and sf.info(dataset.audio_path(clip)).channels == 1
    )


# -- wakeword score / detect / mine: the streaming reader refuses what load_audio refuses, in the same words ------
def load_error(path: Path) -> str:
    """load_audio's message for a bad file."""
    with pytest.raises(AudioError) as error:
        load_audio(path)
    return str(error.value)


@pytest.mark.parametrize("command", ["score", "detect"])
@pytest.mark.parametrize("kind", BAD)
def test_score_and_detect_refuse_bad_audio_as_load_audio_does(tmp_path, capsys, model_dir, command, kind):
    path = audio_file(kind, tmp_path)
    code, out, err = run_cli(capsys, command, model_dir, path)
    last = assert_error_line(code, err, command, str(path), BAD[kind])
    assert last == f"wakeword {command}: error: {load_error(path)}"
    assert out == ""


def test_a_wav_cut_short_of_its_header_is_refused_by_every_command(tmp_path, capsys, model_dir):
    """The case a new user hit: 3000 bytes of a WAV whose header declares 35,460 bytes of samples."""
    path = tmp_path / "cut.wav"
    sf.write(path, tone(35460 / 2 / SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    assert struct.unpack("<I", path.read_bytes()[40:44])[0] == 35460
    path.write_bytes(path.read_bytes()[:3000])
    says = f"{path}: truncated WAV (header declares 35460 bytes of samples, file holds 2956)"
    assert load_error(path) == says
    for command in ("score", "detect"):
        code, _, err = run_cli(capsys, command, model_dir, path)
        assert assert_error_line(code, err, command) == f"wakeword {command}: error: {says}"
    code, _, err = run_cli(capsys, "mine", model_dir, path, "--out", tmp_path / "mined")
    assert assert_error_line(code, err, "mine") == f"wakeword mine: error: {says}"
    (tmp_path / "neg").mkdir()
    sf.write(tmp_path / "neg" / "tone.wav", tone(), SAMPLE_RATE)
    code, _, err = run_cli(capsys, "evaluate", model_dir, "--positives", tmp_path, "--negatives", tmp_path / "neg")
    assert assert_error_line(code, err, "evaluate") == f"wakeword evaluate: error: {says}"


@pytest.mark.parametrize("kind", BAD)
def test_mine_refuses_a_bad_file_it_is_given_as_load_audio_does(tmp_path, capsys, model_dir, kind):
    path = audio_file(kind, tmp_path / "src")
    code, out, err = run_cli(capsys, "mine", model_dir, path, "--out", tmp_path / "mined")
    if kind == "directory":  # a folder named like audio is searched for audio files, and holds none
        assert_error_line(code, err, "mine", str(path), "no audio files")
    else:
        assert assert_error_line(code, err, "mine", str(path)) == f"wakeword mine: error: {load_error(path)}"
    assert out == ""


def test_mine_skips_a_bad_file_found_in_a_folder_and_names_it(tmp_path, capsys, model_dir):
    bad = audio_file("truncated_wav", tmp_path / "src")
    audio_file("float32", tmp_path / "src")
    code, out, _ = run_cli(capsys, "mine", model_dir, tmp_path / "src", "--out", tmp_path / "mined")
    assert code == 0 and "mined 1 file(s)" in out and f"skipped {load_error(bad)}" in out


@pytest.mark.parametrize("kind", GOOD)
def test_score_reads_every_format_rate_and_layout(tmp_path, capsys, model_dir, kind):
    code, out, _ = run_cli(capsys, "score", model_dir, audio_file(kind, tmp_path))
    rows = out.strip().splitlines()[1:]
    assert code == 0 and len(rows) == 10 and all(np.isfinite(float(r.split(",")[1])) for r in rows)  # logits


@pytest.mark.slow
def test_score_streams_a_two_hour_file_in_bounded_memory(tmp_path):
    """Peak memory of `wakeword score` (a process of its own) on 2 hours vs on 1 second of audio: loading the
    file would add 460 MB of float32 samples; streaming adds nothing."""
    torch.manual_seed(0)  # a 1.5 s hop: 4800 rows instead of 72000, the same reading and streaming code
    config = DetectorConfig(family="e2e", wake_words=(WORD,), hop_seconds=1.5)
    model = save_detector(get_family("e2e").build_model(config), tmp_path / "model")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    peaks = {}
    for name, seconds in (("short", 1.0), ("long", 2 * 3600)):
        audio = sparse_wav(tmp_path / f"{name}.wav", seconds)
        with open(tmp_path / f"{name}.csv", "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "wakeword.cli", "score", str(model), str(audio)], stdout=out,
                                    stderr=subprocess.PIPE, env=env)  # fmt: skip
            _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:]
        peaks[name] = usage.ru_maxrss * 1024  # kilobytes on Linux
    rows = (tmp_path / "long.csv").read_text().splitlines()
    assert len(rows) == 1 + 4800 and rows[-1].startswith("7200.00,")
    assert peaks["long"] - peaks["short"] < 100 * 2**20, peaks


# -- wakeword evaluate -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BAD)
def test_evaluate_names_the_bad_file_or_folder(tmp_path, capsys, model_dir, kind):
    positives, negatives = tmp_path / "pos", tmp_path / "neg"
    bad = audio_file(kind, positives)
    audio_file("float32", negatives)
    if kind == "missing":
        positives = tmp_path / "no-such-folder"
    code, out, err = run_cli(capsys, "evaluate", model_dir, "--positives", positives, "--negatives", negatives)
    # a folder named like audio is not audio: then the positives folder holds none, and that is the error
    named = str(positives) if kind in ("missing", "directory") else str(bad)
    last = assert_error_line(code, err, "evaluate", named)
    if kind not in ("missing", "directory"):
        assert last == f"wakeword evaluate: error: {load_error(bad)}"
    assert out == ""


@pytest.mark.parametrize("kind", GOOD)
def test_evaluate_reads_every_format_rate_and_layout(tmp_path, capsys, model_dir, kind):
    audio_file(kind, tmp_path / "pos")
    audio_file("float32", tmp_path / "neg")
    code, out, _ = run_cli(
        capsys, "evaluate", model_dir, "--positives", tmp_path / "pos", "--negatives", tmp_path / "neg"
    )
    report = json.loads(out)
    assert code == 0 and report["n_positive"] == 1 and report["n_negative"] == 1


def test_evaluate_refuses_an_empty_noise_folder_and_noise_without_snr(tmp_path, capsys, model_dir):
    audio_file("float32", tmp_path / "pos")
    audio_file("float32", tmp_path / "neg")
    (tmp_path / "noise").mkdir()
    base = ["evaluate", model_dir, "--positives", tmp_path / "pos", "--negatives", tmp_path / "neg"]
    code, _, err = run_cli(capsys, *base, "--noise", tmp_path / "noise", "--snr-db", 10)
    assert_error_line(code, err, "evaluate", str(tmp_path / "noise"), "no audio files")
    code, _, err = run_cli(capsys, *base, "--noise", tmp_path / "pos")
    assert_error_line(code, err, "evaluate", "--snr-db")
    code, _, err = run_cli(capsys, *base, "--word", "jarvis")
    assert_error_line(code, err, "evaluate", "no word 'jarvis'")


# -- wakeword train ------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_recipe(tmp_path) -> tuple[Path, DataSet]:
    """A recipe training a small e2e model on a data set of 12 noise clips."""
    dataset = DataSet.create(tmp_path / "ds")
    rng = np.random.default_rng(0)
    for i in range(12):
        dataset.add_audio((0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32), {WORD: i % 2}, speaker=str(i))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: tiny\nwake_words: [{WORD}]\n"
        "model: {family: e2e, head: {channels: [4, 4, 4], blocks_per_stage: 1}}\n"
        f"data: {{train: [{dataset.root}], synth: null}}\ntrain: {{epochs: 1, max_steps: 1, batch_size: 16}}\n"
        "evaluate: {calibration_minutes: 0}\n"
    )
    return recipe, dataset


@pytest.mark.parametrize("kind", BAD)
def test_train_names_the_clip_whose_audio_is_bad_and_writes_no_model(tmp_path, capsys, tiny_recipe, kind):
    recipe, dataset = tiny_recipe
    made = audio_file(kind, tmp_path / "bad")
    clip = Clip("bad-clip", f"audio/bad-clip{made.suffix}", {WORD: 1}, "recorded", speaker="x")
    if made.exists():
        made.rename(dataset.audio_path(clip))
    dataset.add_clips([clip])
    code, _, err = run_cli(capsys, "train", recipe, "--out", tmp_path / "model")
    line = assert_error_line(code, err, "train", "bad-clip")
    if kind == "missing":
        assert "clip bad-clip names missing audio file audio/bad-clip.wav" in line
    else:
        assert str(dataset.audio_path(clip)) in line and BAD[kind] in line
    assert not (tmp_path / "model" / "config.json").exists()


def test_data_check_names_the_clip_whose_audio_is_missing(tmp_path, capsys, tiny_recipe):
    _, dataset = tiny_recipe
    clip = dataset.clips()[3]
    dataset.audio_path(clip).unlink()
    code, out, _ = run_cli(capsys, "data", "check", dataset.root)
    assert code == 1 and f"clip {clip.id}: missing audio file {clip.path}" in out


def test_train_refuses_a_recipe_that_is_a_folder_or_missing(tmp_path, capsys):
    for recipe in (tmp_path, tmp_path / "missing.yaml"):
        code, _, err = run_cli(capsys, "train", recipe, "--out", tmp_path / "model")
        assert_error_line(code, err, "train", str(recipe), "cannot read recipe")
    assert not (tmp_path / "model").exists()


def test_train_names_a_binary_file_given_as_recipe(tmp_path, capsys):
    not_yaml = audio_file("float32", tmp_path)
    code, _, err = run_cli(capsys, "train", not_yaml, "--out", tmp_path / "model")
    assert_error_line(code, err, "train", str(not_yaml))


# -- wakeword synth / listen (no audio input: their bad input is arguments and folders) ---------------------------
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["123", "--out", "{tmp}/synth"], "no letters to say"),
        (["hey", "--out", "{tmp}/synth", "--n-positives", "-3"], "counts must be >= 0"),
        (["hey", "--out", "{file}"], "exists and is not a folder"),
    ],
)
def test_synth_refuses_bad_arguments_before_writing_anything(tmp_path, capsys, args, says):
    a_file = audio_file("float32", tmp_path)
    code, _, err = run_cli(capsys, "synth", *[a.format(tmp=tmp_path, file=a_file) for a in args])
    assert_error_line(code, err, "synth", says)
    assert not (tmp_path / "synth").exists()


def test_listen_refuses_what_is_not_a_model_or_a_device(tmp_path, capsys, model_dir):
    pickled = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, pickled)
    cases = [
        ([tmp_path / "missing"], "not a model directory"),
        ([pickled], "not a single file"),
        ([audio_file("float32", tmp_path)], "not a single file"),
        ([], "give a MODEL_DIR"),
    ]
    for args, says in cases:
        code, _, err = run_cli(capsys, "listen", *args)
        assert_error_line(code, err, "listen", says, *map(str, args))
    pytest.importorskip("sounddevice", exc_type=OSError)  # PortAudio itself is needed to look devices up
    code, _, err = run_cli(capsys, "listen", model_dir, "--device", "no-such-microphone")
    assert_error_line(code, err, "listen", "no-such-microphone", "--list-devices")
    code, _, err = run_cli(capsys, "listen", model_dir, "--device", "99")  # an index: no such device
    assert_error_line(code, err, "listen", "input device 99", "--list-devices")


def test_listen_without_any_input_device_says_so_and_points_at_list_devices(capsys, model_dir):
    sounddevice = pytest.importorskip("sounddevice", exc_type=OSError)
    if sounddevice.default.device[0] >= 0 or any(d["max_input_channels"] for d in sounddevice.query_devices()):
        pytest.skip("this machine has an input device")  # e.g. while PulseAudio runs
    code, _, err = run_cli(capsys, "listen", model_dir)
    last = assert_error_line(code, err, "listen", "no input device found", "wakeword listen --list-devices")
    assert "Error querying device" not in last


# -- the app's upload (Studio.read_recording / save_clip) ---------------------------------------------------------
@pytest.mark.parametrize("kind", BAD)
def test_app_upload_refuses_bad_files_and_saves_nothing(tmp_path, kind):
    studio = Studio(tmp_path / "data")
    path = audio_file(kind, tmp_path / "uploads")
    with pytest.raises(StudioError, match=r"cannot read the recording: .*" + re.escape(str(path))):
        studio.save_clip("rec", WORD, "wake word", str(path))
    assert studio.datasets() == [] and not (studio.root / "datasets" / "rec").exists()


@pytest.mark.parametrize("kind", GOOD)
def test_app_upload_stores_every_format_as_16k_mono(tmp_path, kind):
    studio = Studio(tmp_path / "data")
    clip_id = studio.save_clip("rec", WORD, "wake word", str(audio_file(kind, tmp_path / "uploads")))
    rate, audio = studio.clip_audio("rec", clip_id)
    assert rate == SAMPLE_RATE and abs(len(audio) - SAMPLE_RATE) <= 1


def _two_hour_wav(folder: Path) -> Path:
    return sparse_wav(folder / "two-hours.wav", 2 * 3600)


def _twenty_minute_flac(folder: Path) -> Path:
    path = folder / "quiet.flac"
    sf.write(path, np.zeros(20 * 60 * SAMPLE_RATE, np.int16), SAMPLE_RATE, format="FLAC")  # 20 min of silence
    assert path.stat().st_size < 10 * 2**20  # under the byte limit: only its length gives it away
    return path


@pytest.mark.parametrize(
    ("make", "message", "max_peak_bytes"),
    [
        (_two_hour_wav, r"the file is 219\.7 MB; the limit is 10 MB", 1_000_000),  # refused by its size
        (_twenty_minute_flac, r"quiet\.flac: too long \(1200\.0 s; at most 5 s\)", 10 * 2**20),  # decoding: 77 MB
    ],
    ids=["two-hour-wav", "small-flac-of-20-minutes"],
)
def test_app_refuses_long_uploads_without_decoding_them(tmp_path, make, message, max_peak_bytes):
    studio = Studio(tmp_path / "data")
    path = make(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(StudioError, match=message):
            studio.save_clip("rec", WORD, "wake word", str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < max_peak_bytes and studio.datasets() == []


# -- model directories: never unpickle, name every problem --------------------------------------------------------
class Detonator:
    """Unpickling this calls open(marker, "w"): the marker file proves code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_posing_as_weights_is_refused_and_never_runs(tmp_path, capsys, model_dir):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes((model_dir / "config.json").read_bytes())
    audio = audio_file("float32", tmp_path)
    payloads = {
        "raw pickle": pickle.dumps({"output.weight": Detonator(tmp_path / "ran")}),
        "torch.save zip": None,
    }
    torch.save({"output.weight": Detonator(tmp_path / "ran")}, tmp_path / "zip.pt")
    payloads["torch.save zip"] = (tmp_path / "zip.pt").read_bytes()
    for name, payload in payloads.items():
        (model / "model.safetensors").write_bytes(payload)
        with pytest.raises(ModelError, match=r"model\.safetensors: not a valid safetensors file"):
            load_detector(model)
        code, _, err = run_cli(capsys, "score", model, audio)
        assert_error_line(code, err, "score", "not a valid safetensors file")
        assert not (tmp_path / "ran").exists(), name
    # the payloads are live: the way pickle-based loaders read them, they run
    pickle.loads(payloads["raw pickle"].replace(b"ran", b"rn2"))
    torch.load(tmp_path / "zip.pt", weights_only=False)
    assert (tmp_path / "rn2").exists() and (tmp_path / "ran").exists()


def test_pickle_files_offered_as_models_are_refused(tmp_path, model_dir):
    for name in ("model.pt", "pytorch_model.bin"):
        torch.save({"w": Detonator(tmp_path / "ran")}, tmp_path / name)
        with pytest.raises(ModelError, match=rf"{re.escape(name)}: a model is a folder .* not a single file"):
            load_detector(tmp_path / name)
    folder = tmp_path / "hf-style"
    folder.mkdir()
    (folder / "config.json").write_bytes((model_dir / "config.json").read_bytes())
    (tmp_path / "pytorch_model.bin").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"no model\.safetensors \(pytorch_model\.bin is pickle, which wakeword never"):
        load_detector(folder)
    assert not (tmp_path / "ran").exists()


CONFIG_PROBLEMS = [
    ("format_version", None, "format_version None is missing or not a positive whole number"),
    ("format_version", "1", "format_version '1' is missing or not a positive whole number"),
    ("format_version", 0, "format_version 0 is missing"),
    ("format_version", 3, "format_version 3 is newer than this wakeword reads"),
    ("family", None, "missing key 'family'"),
    ("wake_words", None, "missing key 'wake_words'"),
    ("wake_words", "hey computer", "wake_words must be a non-empty list of words"),
    ("hop_seconds", "0.1", "hop_seconds must be a number"),
    ("thresholds", {WORD: "high"}, f"threshold of '{WORD}' must be a number"),
    ("head", {"channels": "wide"}, "cannot build the e2e model"),
]


@pytest.mark.parametrize(("key", "value", "says"), CONFIG_PROBLEMS, ids=[f"{k}={v!r}" for k, v, _ in CONFIG_PROBLEMS])
def test_config_problems_are_model_errors_naming_the_key(tmp_path, model_dir, key, value, says):
    model = tmp_path / "model"
    model.mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    if value is None:
        del config[key]
    else:
        config[key] = value
    (model / "config.json").write_text(json.dumps(config))
    (model / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    with pytest.raises(ModelError, match=re.escape(f"{model / 'config.json'}: {says}")):
        load_detector(model)


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", "\udcff"])
def test_a_config_that_is_not_a_json_object_is_a_model_error(tmp_path, model_dir, text):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ModelError, match=re.escape(str(model / "config.json"))):
        load_detector(model)


def test_an_unexpected_weight_is_named(tmp_path, model_dir):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes((model_dir / "config.json").read_bytes())
    save_file(
        {**load_file(model_dir / "model.safetensors"), "backdoor.weight": torch.zeros(3)}, model / "model.safetensors"
    )
    with pytest.raises(ModelError, match=r"unexpected weight 'backdoor\.weight' for family e2e"):
        load_detector(model)


def test_an_encoder_that_cannot_be_loaded_is_a_model_error(tmp_path, capsys):
    """A transfer model names its encoder; one that cannot be found (offline) fails as the model, one line."""
    config = DetectorConfig("transfer", (WORD,), encoder={"name": "/no/such/whisper", "trainable": "head"})
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(config.to_dict()))
    save_file({}, model / "model.safetensors")
    with pytest.raises(ModelError, match=r"config\.json: cannot build the transfer model \(cannot load Whisper"):
        load_detector(model)
    code, _, err = run_cli(capsys, "score", model, audio_file("float32", tmp_path))
    assert_error_line(code, err, "score", "cannot load Whisper '/no/such/whisper'")
