"""The two-stage detector: trains from a recipe, stores and reloads, and gates stage 2 as it promises.

One tiny cascade (a small TC-ResNet stage 1, a transfer stage 2 on a tiny random Whisper) is trained once
from recipes/cascade.yaml with tiny settings on espeak-ng speech, and every test reads it.
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wakeword.audio import SAMPLE_RATE
from wakeword.checkpoint import ModelError, load_detector, save_detector
from wakeword.data.clips import DataSet
from wakeword.distill import coloured_noise_windows, gate_for, quieter_windows, split_longform
from wakeword.evaluate import padded_clip
from wakeword.models.base import DetectorConfig
from wakeword.models.cascade import CascadeDetector
from wakeword.scoring import score_signals
from wakeword.stream import StreamingDetector, score_array

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORD = "hey computer"
RECIPE = Path(__file__).parents[1] / "recipes" / "cascade.yaml"
VARIANTS = ["", "m1", "f2", "m3", "f4", "m5", "f1", "m2"]
OTHER = ["hey commuter", "computer", "hey", "good morning", "the weather is nice", "open the window"]


def _noise(seconds: float, seed: int, level: float = 0.02) -> np.ndarray:
    """White noise shaped pink-ish by a running mean: (n_samples,) float32."""
    white = np.random.default_rng(seed).normal(0, level, int(seconds * SAMPLE_RATE))
    return (np.convolve(white, np.ones(8) / 8, mode="same") * 2).astype(np.float32)


def _speech(tts, n: int) -> np.ndarray:
    gap = np.zeros(SAMPLE_RATE // 3, np.float32)
    return np.concatenate([p for i in range(n) for p in (tts(OTHER[i % len(OTHER)], speed=0.9 + 0.1 * (i % 3)), gap)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tts):
    """(model dir, recipe, report, root) of a tiny cascade trained from the shipped recipe."""
    from wakeword.pipeline import train_recipe
    from wakeword.recipes import load_recipe

    root = tmp_path_factory.mktemp("cascade")
    data = DataSet.create(root / "data")
    for i, variant in enumerate(VARIANTS):
        for speed in (0.85, 1.0, 1.15):
            data.add_audio(tts(WORD, variant=variant, speed=speed), {WORD: 1}, source="synth", speaker=f"v{i}")
        for text in OTHER[1:]:
            data.add_audio(tts(text, variant=variant), {WORD: 0}, source="synth", speaker=f"v{i}")
    for folder, audio in (("noise", _noise(20, 1)), ("speech", _speech(tts, 12))):
        (root / folder).mkdir()
        sf.write(root / folder / "a.wav", audio, SAMPLE_RATE)
    # stage 2 is an e2e CNN here: a head on the tiny RANDOM Whisper learns nothing, and these tests need a
    # stage 2 that separates the word (test_transfer_stage2_round_trip covers a transfer stage 2)
    overrides = [
        f"data.train=[{data.root}]",
        "data.synth=null",
        "model.cascade.stage2_family=e2e",
        "model.head={channels: [16, 24, 32], blocks_per_stage: 1}",
        f"model.cascade.distill_audio=[{root / 'speech'}]",
        "model.cascade.max_distill_windows=200",
        "model.cascade.stage1_window_seconds=1.0",  # the recipe reads the whole window; a shorter one is harder
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        f"data.noise_dirs=[{root / 'noise'}]",
        "train.epochs=20",
        "train.patience=20",
        "train.lr=0.005",
        "train.batch_size=16",
        "train.n_views=1",
        "train.feature_cache=false",
        "evaluate.calibration_minutes=0",
    ]
    recipe = load_recipe(RECIPE, overrides)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAKEWORD_CACHE_DIR", str(root / "cache"))  # frames and segments made here
        report = train_recipe(recipe, root / "model")
        yield root / "model", recipe, report, root


@pytest.fixture(scope="module")
def cascade(trained) -> CascadeDetector:
    return load_detector(trained[0])


class _Calls:
    """Counts the calls and windows of a module's forward (a torch hook: no change to the model)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls, self.windows = 0, 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.calls, self.windows = self.calls + 1, self.windows + len(inputs[0])


def test_recipe_trains_a_cascade_whose_config_names_both_stages(trained, cascade, capsys):
    model_dir, _, report, _ = trained
    head = cascade.config.head
    assert cascade.config.family == "cascade" and isinstance(cascade, CascadeDetector)
    assert head["stage1"]["family"] == "e2e" and head["stage2"]["family"] == "e2e"
    assert head["stage1"]["window_seconds"] == 1.0 and head["stage2"]["window_seconds"] == 1.5
    assert np.isfinite(head["gate"]["logits"][WORD]) and head["gate"]["recall"] >= 0.995
    assert cascade.config.thresholds == head["stage2"]["thresholds"]  # the cascade decides at stage 2's threshold
    assert 0.0 <= report.calibration["cascade_gate"]["call_rate"] <= 1.0
    assert (model_dir / "report.json").is_file() and not list(model_dir.parent.glob(".model.stage2*"))
    assert report.words[WORD].n_positive > 0 and "stage2_test" in report.counts


def test_model_directory_round_trip(cascade, tmp_path, tts):
    from safetensors.torch import load_file

    again = load_detector(save_detector(cascade, tmp_path / "copy"))
    assert again.config == cascade.config
    names = set(load_file(tmp_path / "copy" / "model.safetensors"))
    assert {n.split(".")[0] for n in names} == {"stage1", "stage2"}
    audio = np.concatenate([_noise(2, 3), tts(WORD), _noise(1, 4)])
    np.testing.assert_array_equal(score_array(cascade, audio)[1], score_array(again, audio)[1])


def test_a_hop_stage2_did_not_see_is_never_at_the_threshold(cascade, tts):
    audio = np.concatenate([_speech(tts, 4), tts(WORD), _noise(2, 5), tts(WORD, variant="f2")])
    first = score_array(cascade.stage1, audio)[1][:, 0].astype(np.float64)
    second = score_array(cascade.stage2, audio)[1][:, 0].astype(np.float64)
    both = score_array(cascade, audio)[1][:, 0].astype(np.float64)
    threshold, gate = cascade.config.threshold(WORD), cascade.gate.logits[WORD]
    unseen = first < gate
    ceiling = threshold - cascade.gate.unseen_margin
    np.testing.assert_allclose(both[unseen], np.minimum(first[unseen], ceiling), atol=1e-5)
    assert (both[unseen] < threshold).all()
    np.testing.assert_allclose(both[~unseen], second[~unseen], atol=1e-4)


def test_stage2_is_not_called_on_silence_and_noise(cascade):
    counter = _Calls(cascade.stage2)
    for audio in (np.zeros(20 * SAMPLE_RATE, np.float32), _noise(20, 7), _noise(20, 8, level=0.002)):
        scores = score_array(cascade, audio)[1]
        assert len(scores) == 200
    counter.handle.remove()
    assert counter.calls == 0 and counter.windows == 0


def test_the_gate_passes_every_hop_stage2_fires_on_in_the_test_set(trained, cascade):
    from wakeword.pipeline import collect_clips, split_clips

    _, recipe, _, _ = trained
    splits = split_clips(collect_clips(recipe)[0], recipe)
    signals = [padded_clip(cascade.config, _load(root / c.path)) for c, root in splits.test]
    assert splits.test and any(c.labels[WORD] for c, _ in splits.test)
    threshold, n_firing = cascade.config.threshold(WORD), 0
    for alone, both in zip(score_signals(cascade.stage2, signals), score_signals(cascade, signals), strict=True):
        firing = alone[:, 0] >= threshold
        n_firing += int(firing.sum())
        np.testing.assert_allclose(both[firing, 0], alone[firing, 0], atol=1e-4)
        assert ((both[:, 0] >= threshold) == firing).all()  # so the detections are stage 2's own
    assert n_firing > 0


def _load(path: Path) -> np.ndarray:
    from wakeword.audio import load_audio

    return load_audio(path)


def test_streamed_scores_equal_whole_file_scores(cascade, tts):
    audio = np.concatenate([_noise(1, 9), tts(WORD), _speech(tts, 3), tts(WORD, variant="m3"), _noise(1, 10)])
    whole = next(score_signals(cascade, [audio], batch_windows=1000))
    streamer, rows = StreamingDetector(cascade, batch_hops=7), []
    for start in range(0, len(audio), 1234):
        rows.append(streamer.process(audio[start : start + 1234]).scores)
    rows.append(streamer.flush().scores)
    np.testing.assert_allclose(np.concatenate(rows), whole, atol=1e-4)


def test_strided_scoring_equals_window_scoring_and_calls_stage2_on_the_same_windows(cascade, tts):
    """Streaming's call (Detector.score_strided: stage 1 shares its frames between overlapping windows)."""
    assert cascade.stage1.settings.framing == "valid"  # the recipe's stage 1
    signal = np.concatenate([_noise(1, 11), tts(WORD), _speech(tts, 2), np.zeros(5000, np.float32)])
    hop, size = cascade.config.hop_samples, cascade.config.window_samples
    windows = torch.from_numpy(signal).unfold(0, size, hop)
    before = cascade.stage2_windows
    strided = cascade.score_strided(torch.from_numpy(signal), hop)
    n_strided = cascade.stage2_windows - before
    whole = cascade.score(windows.contiguous())
    assert strided.shape == whole.shape == (len(windows), 1)
    torch.testing.assert_close(strided, whole, atol=1e-4, rtol=0)
    assert 0 < n_strided == cascade.stage2_windows - before - n_strided


def test_the_numpy_live_path_scores_as_score_strided_and_opens_the_same_gates(cascade, tts, monkeypatch):
    """Streaming's call on the CPU (Detector.strided_logits_numpy: no torch tensor until a gate opens) gives
    score_strided's logits and sends the same windows to stage 2; in training mode it steps aside."""
    signal = np.concatenate([_noise(1, 12), tts(WORD), _speech(tts, 2), np.zeros(5000, np.float32)])
    hop = cascade.config.hop_samples
    before = cascade.stage2_windows
    strided = cascade.score_strided(torch.from_numpy(signal), hop).numpy()
    n_strided = cascade.stage2_windows - before
    numpy_logits = cascade.strided_logits_numpy(signal, hop)
    assert numpy_logits is not None and numpy_logits.dtype == np.float32
    np.testing.assert_allclose(numpy_logits, strided, atol=1e-5, rtol=0)
    assert 0 < n_strided == cascade.stage2_windows - before - n_strided
    torch_calls, torch_path = [], cascade.stage1.score_strided
    cascade.stage1.score_strided = lambda *args: torch_calls.append(1) or torch_path(*args)
    try:
        streamer = StreamingDetector(cascade)
        streamed = np.concatenate([streamer.process(signal).scores, streamer.flush().scores])
    finally:
        del cascade.stage1.score_strided
    assert torch_calls == []  # the stream took the numpy path ...
    whole = next(score_signals(cascade, [signal], batch_windows=1000))
    np.testing.assert_allclose(streamed, whole, atol=1e-4, rtol=0)  # ... and scored as whole-file scoring does
    monkeypatch.setenv("WAKEWORD_ENCODER_BACKEND", "torch")  # no onnxruntime graph: torch scores, same numbers
    np.testing.assert_allclose(cascade.strided_logits_numpy(signal, hop), strided, atol=1e-4, rtol=0)
    cascade.train()
    try:
        assert (
            cascade.strided_logits_numpy(signal, hop) is None
            and cascade.stage1.strided_logits_numpy(signal, hop) is None
        )
    finally:
        cascade.eval()


def test_quieter_windows_are_20_to_60_db_down_plus_silence():
    windows = np.random.default_rng(0).normal(0, 0.1, (400, 1600)).astype(np.float32)
    quiet = quieter_windows(windows, 0.25, seed=1)
    assert quiet.shape == (100 + 4, 1600)
    silent = ~quiet.any(axis=1)
    assert silent.sum() == 4
    level_db = 20 * np.log10(np.sqrt((quiet[~silent] ** 2).mean(axis=1)) / 0.1)
    assert (level_db < -19.5).all() and (level_db > -60.5).all() and level_db.std() > 5
    assert quieter_windows(windows, 0.0, seed=1).shape == (0, 1600)


def test_coloured_noise_windows_span_levels_and_colours():
    noise = coloured_noise_windows(100, 8000, seed=2)
    assert noise.shape == (100, 8000) and noise.dtype == np.float32 and np.abs(noise).max() <= 1.0
    level_db = 20 * np.log10(np.sqrt((noise**2).mean(axis=1)))
    assert level_db.min() > -61 and level_db.max() < -9.5 and np.ptp(level_db) > 30
    power = np.abs(np.fft.rfft(noise, axis=1)) ** 2
    tilt_db = 10 * np.log10(power[:, 5:250].sum(axis=1) / power[:, 2000:].sum(axis=1))  # below 500 Hz vs above 4 kHz
    assert tilt_db.min() < -5 and tilt_db.max() > 25  # white (more high band) to brown (nearly all low)
    np.testing.assert_array_equal(noise, coloured_noise_windows(100, 8000, seed=2))


def test_cli_score_and_detect_read_a_cascade_without_knowing(trained, tmp_path, tts, capsys):
    from wakeword.cli import main

    audio = np.concatenate([_noise(1, 11), tts(WORD), _noise(1, 12)])
    sf.write(tmp_path / "a.wav", audio, SAMPLE_RATE)
    assert main(["score", str(trained[0]), str(tmp_path / "a.wav")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "time_seconds,score" and len(rows) - 1 == int(np.ceil(len(audio) / 1600))
    assert main(["detect", str(trained[0]), str(tmp_path / "a.wav")]) == 0


def test_gate_passes_the_required_share_of_firing_hops():
    first = np.array([5.0, 1.0, 2.0, 3.0, -4.0, 0.5])
    firing = np.array([True, True, True, True, False, False])
    assert gate_for(first, firing, 1.0, 0.0) == 1.0  # all four: the lowest firing hop's stage-1 logit
    assert gate_for(first, firing, 0.75, 0.0) == 2.0  # three of four may pass
    assert gate_for(first, firing, 0.995, 0.5) == 0.5  # ceil(0.995 * 4) = 4, lowered by the slack
    assert gate_for(first, np.zeros(6, bool), 0.995, 1.0) == float("-inf")  # nothing to calibrate on


def test_stage_configs_must_agree_with_the_cascade(cascade):
    head = dict(cascade.config.head)
    head["stage1"] = {**head["stage1"], "wake_words": ["jarvis"]}
    with pytest.raises(ValueError, match="wake words"):
        CascadeDetector(cascade.config.replace(head=head))
    with pytest.raises(ValueError, match=r"head\.stage2"):
        CascadeDetector(DetectorConfig(family="cascade", wake_words=(WORD,), head={"stage1": head["stage2"]}))


def test_missing_stage_weights_are_a_clear_error(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    save_detector(load_detector(trained[0]), tmp_path / "m")
    state = load_file(tmp_path / "m" / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("stage1.")}, tmp_path / "m" / "model.safetensors")
    with pytest.raises(ModelError, match="missing weight 'stage1"):
        load_detector(tmp_path / "m")


def test_transfer_stage2_round_trip(cascade, tiny_whisper_dir, tmp_path):
    """A transfer stage 2 with a frozen encoder stores only its head; loading rebuilds the encoder."""
    from safetensors.torch import load_file

    from wakeword.models.transfer import TransferDetector

    stage2 = DetectorConfig(family="transfer", wake_words=(WORD,), encoder={"name": str(tiny_whisper_dir),
                            "trainable": "head"}, head={"hidden": [8]}, thresholds={WORD: 1.5})  # fmt: skip
    head = {**cascade.config.head, "stage2": stage2.to_dict()}
    built = CascadeDetector(cascade.config.replace(head=head, thresholds={WORD: 1.5}))
    assert isinstance(built.stage2, TransferDetector)
    again = load_detector(save_detector(built, tmp_path / "m"))
    names = set(load_file(tmp_path / "m" / "model.safetensors"))
    assert any(n.startswith("stage2.head.") for n in names) and not any(n.startswith("stage2.encoder.") for n in names)
    audio = torch.from_numpy(_noise(1.5, 13)[None])
    torch.testing.assert_close(again.stage2.score(audio), built.stage2.score(audio))
    torch.testing.assert_close(again.score(audio), built.score(audio))


def test_a_trained_cascade_exports_and_the_runtime_scores_it_as_torch(trained, cascade, tmp_path, tts):
    from wakeword.export import export_detector
    from wakeword.runtime import load_runtime, streaming_detector

    export_detector(trained[0], tmp_path / "out")
    audio = np.concatenate([_speech(tts, 3), tts(WORD), _noise(2, 16), tts(WORD, variant="m3"), _noise(1, 17)])
    runtime = load_runtime(tmp_path / "out", threads=1)
    streamer = streaming_detector(runtime)
    got = np.concatenate([streamer.process(audio).scores, streamer.flush().scores])
    np.testing.assert_allclose(got, score_array(cascade, audio)[1], atol=1e-4)
    assert 0 < runtime.stage2_windows < len(got)


def test_evaluate_and_mine_read_a_cascade_without_knowing(trained, tmp_path, tts):
    from wakeword.evaluate import evaluate_folders
    from wakeword.mining import MineSettings, mine

    for folder, texts in (("pos", [WORD]), ("neg", ["good morning", "open the window"])):
        (tmp_path / folder).mkdir()
        for i, text in enumerate(texts):
            sf.write(tmp_path / folder / f"{i}.wav", tts(text, variant="f3"), SAMPLE_RATE)
    report = evaluate_folders(load_detector(trained[0]), tmp_path / "pos", tmp_path / "neg")
    assert report["n_positive"] == 1 and report["n_negative"] == 2
    sf.write(tmp_path / "room.wav", np.concatenate([_speech(tts, 4), _noise(3, 14)]), SAMPLE_RATE)
    mined = mine(trained[0], [tmp_path / "room.wav"], tmp_path / "mined", MineSettings(threshold=-20.0))
    assert mined.n_activations >= 1 and mined.n_added == len(DataSet(tmp_path / "mined").clips())


def test_a_trained_detector_becomes_stage2_as_it_is(trained, cascade, tmp_path):
    """model.cascade.stage2_model: no stage-2 training; its weights and threshold are the cascade's."""
    import dataclasses

    from wakeword.pipeline import train_recipe

    _, recipe, _, _ = trained
    stage2_dir = save_detector(cascade.stage2, tmp_path / "stage2")
    spec = dataclasses.replace(recipe.model.cascade, stage2_model=str(stage2_dir), max_stream_clips=4)
    quick = dataclasses.replace(recipe.train, epochs=2)
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, cascade=spec), train=quick)
    train_recipe(recipe, tmp_path / "model")
    built = load_detector(tmp_path / "model")
    assert built.config.thresholds == cascade.stage2.config.thresholds
    audio = torch.from_numpy(_noise(1.5, 15)[None])
    torch.testing.assert_close(built.stage2.score(audio), cascade.stage2.score(audio))


def test_the_cascade_test_counts_near_misses_apart_as_stage2s_test_does(trained, cascade, tmp_path, tts):
    """Both reports of one folder count the same negatives: synthetic near misses are recorded apart
    (calibration ... test_near_misses), never as false accepts in the FA/h of the held-out split."""
    from wakeword.distill import _test_report

    data = DataSet.create(tmp_path / "data")
    data.add_audio(tts(WORD, variant="m4"), {WORD: 1}, source="synth", speaker="t0")
    data.add_audio(tts("good evening", variant="m4"), {WORD: 0}, source="synth", speaker="t0")
    for text in ("hey commuter", "hey compute"):
        data.add_audio(tts(text, variant="f3"), {WORD: 0}, source="synth", speaker="t1", meta={"kind": "near"})
    pairs = [(clip, data.root) for clip in data.clips()]
    copy = load_detector(trained[0])
    words = _test_report(copy, trained[1], pairs, tmp_path / "out")
    assert (words[WORD].n_positive, words[WORD].n_negative) == (1, 1)
    assert copy.config.calibration["words"][WORD]["test_near_misses"]["n_near_misses"] == 2
    assert copy.config.training["test"][WORD]["n_negative"] == 1


def test_the_long_form_is_split_between_distillation_and_the_gate_only_without_distill_audio():
    from types import SimpleNamespace

    from wakeword.recipes import CascadeSpec

    root = Path("/longform")
    pairs = [(SimpleNamespace(path=f"{i}.wav"), root) for i in range(6)]
    distilled, gate = split_longform(pairs, CascadeSpec())  # share 0.5: every other segment
    assert distilled == [root / "0.wav", root / "2.wav", root / "4.wav"]
    assert [c.path for c, _ in gate] == ["1.wav", "3.wav", "5.wav"]
    distilled, gate = split_longform(pairs, CascadeSpec(longform_share=0.25))
    assert distilled == [root / "0.wav", root / "4.wav"] and len(gate) == 4
    for spec in (CascadeSpec(distill_audio=("speech",)), CascadeSpec(longform_share=0.0)):
        assert split_longform(pairs, spec) == ([], pairs)  # the gate keeps every segment
