import contextlib

import torch
from torch.utils.data import TensorDataset

from wakeword.models.base import masked_bce
from wakeword.recipes import TrainSpec
from wakeword.train import build_scheduler, fit


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
