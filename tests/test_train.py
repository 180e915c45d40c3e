import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

import wakeword.train as train_module
from wakeword.audio import SAMPLE_RATE
from wakeword.data.clips import DataSet
from wakeword.models.base import masked_bce
from wakeword.recipes import TrainSpec
from wakeword.train import (
    STATE_DIR,
    STATE_FILE,
    FitResult,
    TrainingStateError,
    build_scheduler,
    fit,
    load_training_state,
    save_training_state,
)


class TinyHead(torch.nn.Module):
    """A real (small) trainable network over cached frames: (batch, n_frames, dim) -> (batch, n_words)."""

    def __init__(self, dim: int = 8, n_words: int = 2) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, 16), torch.nn.GELU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, n_words)
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames.mean(dim=1))


def loss_fn(model, batch):
    return masked_bce(model(batch["features"]), batch["labels"], batch["mask"], batch.get("pos_weight"))


def cached_set(n: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 2, generator=generator) > 0.5).float()
    features = torch.randn(n, 5, 8, generator=generator) * 0.5
    features[:, :, :2] += labels[:, None, :] * 2.0  # word k is visible in feature k
    mask = torch.ones(n, 2)
    mask[: n // 4, 1] = 0  # a quarter of the clips are not labelled for word 1
    return TensorDataset(features.half(), labels, mask, torch.ones(n))


def accuracy(model, data: TensorDataset) -> float:
    features, labels, mask, _ = data.tensors
    with torch.no_grad():
        predictions = (model.eval()(features.float()) > 0).float()
    return float(((predictions == labels).float() * mask).sum() / mask.sum())


def test_masked_bce_ignores_unlabelled_words_by_hand():
    logits = torch.tensor([[0.0, 100.0]])
    labels = torch.tensor([[1.0, 0.0]])  # word 1 would cost 100 if it were labelled
    loss = masked_bce(logits, labels, torch.tensor([[1.0, 0.0]]))
    assert abs(float(loss) - 0.693147) < 1e-5  # -log(sigmoid(0)) for word 0 alone
    logits.requires_grad_()
    masked_bce(logits, labels, torch.tensor([[1.0, 0.0]])).backward()
    assert logits.grad[0, 1] == 0


def test_scheduler_warms_up_then_decays():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, n_steps=100, warmup_fraction=0.1)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0.1 and abs(rates[9] - 1.0) < 1e-9
    assert rates[50] < rates[20] and rates[-1] >= 0.05


def test_fit_learns_and_keeps_best_epoch(tmp_path):
    torch.manual_seed(0)
    model, train_set, val_set = TinyHead(), cached_set(256, 1), cached_set(64, 2)
    spec = TrainSpec(epochs=8, batch_size=32, lr=1e-2, patience=3, seed=0)
    result = fit(model, loss_fn, train_set, val_set, spec)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)
    assert accuracy(model, val_set) > 0.95


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    spec = TrainSpec(epochs=6, batch_size=32, lr=1e-2, patience=10, seed=3)
    train_set, val_set = cached_set(128, 4), cached_set(32, 5)
    torch.manual_seed(0)
    straight = TinyHead()
    fit(straight, loss_fn, train_set, val_set, spec, state_dir=tmp_path / "a")

    def stop_after_epoch_2(metrics):
        if metrics["epoch"] == 2:
            raise Interrupt

    torch.manual_seed(0)
    first_try = TinyHead()
    with contextlib.suppress(Interrupt):
        fit(first_try, loss_fn, train_set, val_set, spec, state_dir=tmp_path / "b", on_epoch_end=stop_after_epoch_2)
    torch.manual_seed(123)  # a different process would start from other random weights
    resumed = TinyHead()
    result = fit(resumed, loss_fn, train_set, val_set, spec, state_dir=tmp_path / "b")
    assert result.resumed_from_epoch == 2
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_a_frozen_part_is_left_out_of_the_training_state_and_resume_is_exact(tmp_path):
    """A frozen encoder never changes: the per-epoch state holds only what learns, and resuming still gives
    the uninterrupted weights (the frozen part comes from the rebuilt model)."""
    from safetensors.torch import load_file

    def build(seed: int) -> TinyHead:
        torch.manual_seed(0)
        model = TinyHead()
        model.frozen = torch.nn.Linear(64, 64).requires_grad_(False)  # stands in for a frozen encoder
        torch.manual_seed(seed)
        return model

    spec = TrainSpec(epochs=4, batch_size=32, lr=1e-2, patience=10, seed=3)
    train_set, val_set = cached_set(96, 4), cached_set(32, 5)
    straight = build(0)
    fit(straight, loss_fn, train_set, val_set, spec, state_dir=tmp_path / "a")

    def stop_after_epoch_1(metrics):
        if metrics["epoch"] == 1:
            raise Interrupt

    with contextlib.suppress(Interrupt):
        fit(build(0), loss_fn, train_set, val_set, spec, state_dir=tmp_path / "b", on_epoch_end=stop_after_epoch_1)
    saved = load_file(next((tmp_path / "b").glob("state-*.safetensors")))
    assert not any(k.startswith("model.frozen.") for k in saved) and "model.net.0.weight" in saved
    resumed = build(123)
    assert fit(resumed, loss_fn, train_set, val_set, spec, state_dir=tmp_path / "b").resumed_from_epoch == 1
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


# -- interruption: signals, a crash inside the state save, stale states ------------------------------------------
def noise_dataset(root: Path, n_clips: int = 24) -> Path:
    """Positives are noise with a 1 kHz tone, negatives plain noise; one speaker per clip so every split has some."""
    dataset = DataSet.create(root)
    rng = np.random.default_rng(7)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for i in range(n_clips):
        audio = 0.05 * rng.standard_normal(SAMPLE_RATE)
        if i % 2:
            audio[4000:12000] += 0.3 * np.sin(2 * np.pi * 1000 * t[4000:12000])
        dataset.add_audio(audio.astype(np.float32), {"hey computer": i % 2}, speaker=f"s{i}")
    return root


RESUME_EPOCHS = 5


@pytest.fixture(scope="module")
def resume_recipe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    data = noise_dataset(root / "data")
    recipe = root / "recipe.yaml"
    recipe.write_text(
        "name: resume-test\nwake_words: [hey computer]\n"
        "model: {family: e2e, head: {channels: [8, 8, 8], blocks_per_stage: 1}}\n"
        f"data: {{train: [{data}], synth: null}}\n"
        f"train: {{epochs: {RESUME_EPOCHS}, batch_size: 8, lr: 0.003, patience: 100, seed: 5}}\n"
        "evaluate: {calibration_minutes: 0}\n"
    )
    return recipe


def train_command(recipe: Path, out: Path) -> list[str]:
    """Plain `wakeword train`: the recipe's seed alone fixes the result."""
    return [sys.executable, "-m", "wakeword.cli", "train", str(recipe), "--out", str(out)]


# one thread: the same float arithmetic in every run (and no fight with other jobs for the cores)
TRAIN_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


@pytest.fixture(scope="module")
def uninterrupted_weights(resume_recipe, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("straight") / "model"
    done = subprocess.run(train_command(resume_recipe, out), env=TRAIN_ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return load_file(out / "model.safetensors")


def _default_sigint() -> None:
    # a child of a background job starts with SIGINT ignored; a user's terminal would deliver it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_training_then_rerun_gives_the_uninterrupted_weights(
    resume_recipe, uninterrupted_weights, tmp_path, signum
):
    out = tmp_path / "model"
    state = out / STATE_DIR / STATE_FILE
    proc = subprocess.Popen(
        train_command(resume_recipe, out), env=TRAIN_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "training ended before its first epoch's state appeared"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-2000:]  # a clean exit, not killed by the signal
    assert stderr.rstrip().endswith("interrupted")
    saved_epoch = json.loads(state.read_text())["epoch"]
    assert saved_epoch < RESUME_EPOCHS - 1  # stopped inside training, with epochs left to do
    assert not (out / "model.safetensors").exists()  # no half-trained model is published
    rerun = subprocess.run(train_command(resume_recipe, out), env=TRAIN_ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trained = re.findall(r"^epoch (\d+):", rerun.stdout, flags=re.M)
    assert trained == [str(e + 1) for e in range(saved_epoch + 1, RESUME_EPOCHS)]  # resumed, not restarted
    resumed = load_file(out / "model.safetensors")
    assert resumed.keys() == uninterrupted_weights.keys()
    for key, value in uninterrupted_weights.items():
        assert torch.equal(resumed[key], value), key
    assert not (out / STATE_DIR).exists()  # finished: nothing left to resume


def test_an_interrupt_at_any_line_of_the_state_save_leaves_a_loadable_state(tmp_path):
    """Raise KeyboardInterrupt at every line the save executes, as a signal handler would: the folder then
    holds the previous epoch's state or the new one, whole, and never an unreadable mix or nothing."""
    model = TinyHead()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = build_scheduler(optimizer, 10, 0.1)
    old_result = FitResult([{"epoch": 0, "train_loss": 1.0, "val_loss": 1.0}], 0, 1.0)
    new_result = FitResult([*old_result.history, {"epoch": 1, "train_loss": 0.5, "val_loss": 0.5}], 1, 0.5)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    n_lines, interrupted_at = 0, set()
    for stop_at in range(1, 500):
        state_dir = tmp_path / f"try{stop_at}"
        save_training_state(state_dir, model, optimizer, scheduler, 0, old_result, best)
        seen = 0

        def tracer(frame, event, arg, stop_at=stop_at):
            nonlocal seen
            if frame.f_code.co_filename != train_module.__file__:
                return None  # torch and the standard library run untraced
            if event == "line":
                seen += 1
                if seen == stop_at:
                    raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        try:
            save_training_state(state_dir, model, optimizer, scheduler, 1, new_result, best)
        except KeyboardInterrupt:
            interrupted_at.add(stop_at)
        finally:
            sys.settrace(None)
        n_lines = max(n_lines, seen)
        fresh = TinyHead()
        fresh_optimizer = torch.optim.AdamW(fresh.parameters())
        next_epoch, result, _ = load_training_state(
            state_dir, fresh, fresh_optimizer, build_scheduler(fresh_optimizer, 10, 0.1)
        )
        assert next_epoch in (1, 2) and len(result.history) == next_epoch, stop_at
        if stop_at not in interrupted_at:  # the save ran to its end: every line of it has had its interrupt
            assert next_epoch == 2
            break
    assert len(interrupted_at) == n_lines > 10


def test_a_state_from_other_settings_or_a_corrupt_one_is_refused_by_name(tmp_path):
    train_set, val_set = cached_set(64, 1), cached_set(32, 2)
    spec = TrainSpec(epochs=2, batch_size=32, lr=1e-2, seed=0)
    fit(TinyHead(), loss_fn, train_set, val_set, replace(spec, epochs=1), state_dir=tmp_path / "state")
    with pytest.raises(
        TrainingStateError, match=r"state: saved by a run with other settings \(train\.epochs: 1 -> 2\)"
    ):
        fit(TinyHead(), loss_fn, train_set, val_set, spec, state_dir=tmp_path / "state")
    meta = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    (tmp_path / "state" / meta["tensors"]).write_bytes(b"\x00" * 100)  # the tensors file is damaged
    with pytest.raises(TrainingStateError, match=r"state: cannot resume .*delete .*state to start training over"):
        fit(TinyHead(), loss_fn, train_set, val_set, replace(spec, epochs=1), state_dir=tmp_path / "state")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # fit put the handlers back, also on error


def test_signal_handlers_are_installed_only_for_the_fit_in_the_main_thread(tmp_path):
    seen: dict[str, object] = {}

    def record(metrics):
        seen[threading.current_thread().name] = signal.getsignal(signal.SIGTERM)

    spec = TrainSpec(epochs=1, batch_size=32, lr=1e-2, seed=0)
    fit(TinyHead(), loss_fn, cached_set(32, 1), cached_set(16, 2), spec, on_epoch_end=record)
    worker = threading.Thread(
        target=fit, args=(TinyHead(), loss_fn, cached_set(32, 1), cached_set(16, 2), spec), name="app-worker",
        kwargs={"on_epoch_end": record},
    )  # fmt: skip
    worker.start()
    worker.join()
    assert callable(seen["MainThread"]) and seen["MainThread"] != signal.SIG_DFL  # the guard's handler
    assert seen["app-worker"] == signal.SIG_DFL  # another thread cannot (and does not) touch handlers
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_initial_weights_follow_the_recipe_seed(resume_recipe, tmp_path):
    """The recipe's seed covers initialisation: the global RNG state before the run must not matter."""
    from wakeword.pipeline import train_recipe
    from wakeword.recipes import load_recipe

    recipe = load_recipe(resume_recipe, ["train.epochs=1"])
    weights, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocess runs: fast, and the same arithmetic both times
    try:
        for run, global_seed in enumerate((1, 2)):
            torch.manual_seed(global_seed)
            train_recipe(recipe, tmp_path / str(run))
            weights.append(load_file(tmp_path / str(run) / "model.safetensors"))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
