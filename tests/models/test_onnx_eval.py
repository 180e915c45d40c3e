"""Scoring's network in onnxruntime (wakeword.models.onnx_eval): the graph follows the weights, or is not used."""

import copy
import pickle

import numpy as np
import pytest
import torch

from wakeword.models.base import DetectorConfig
from wakeword.models.e2e import _normalised_network, build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def valid_model(seed: int = 0):
    torch.manual_seed(seed)
    config = DetectorConfig(family="e2e", wake_words=("a", "b"), window_seconds=0.5, head={"framing": "valid"})
    return build_model(config).eval()


def signal(seed: int, n_hops: int = 12) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(0, 0.05, 8000 + n_hops * 1600).astype(np.float32))


def torch_scores(model, audio: torch.Tensor) -> torch.Tensor:
    """The windows' scores computed by torch alone (the reference every graph must equal)."""
    with torch.no_grad():
        return model(audio.unfold(0, model.config.window_samples, 1600).contiguous())


def test_strided_scores_run_in_onnxruntime_and_equal_torch():
    model, audio = valid_model(), signal(1)
    scores = model.score_strided(audio, 1600)
    assert model._scoring_graph._session is not None  # the graph served the call
    torch.testing.assert_close(scores, torch_scores(model, audio), atol=1e-5, rtol=0)


def test_the_graph_follows_weights_changed_in_place():
    """An optimiser step and load_state_dict change weights in place: the next score must be the new model's."""
    model, audio = valid_model(), signal(2)
    before = model.score_strided(audio, 1600)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model(torch.randn(4, 8000)).mean().backward()  # a training forward also moves the batch-norm statistics
    optimizer.step()
    model.eval()
    after = model.score_strided(audio, 1600)
    assert not torch.allclose(before, after, atol=1e-3)
    assert model._scoring_graph._session is not None  # traced again, not fallen back to torch
    torch.testing.assert_close(after, torch_scores(model, audio), atol=1e-5, rtol=0)
    model.load_state_dict(valid_model(seed=7).state_dict())
    torch.testing.assert_close(model.score_strided(audio, 1600), torch_scores(model, audio), atol=1e-5, rtol=0)


def test_copies_and_pickles_start_without_a_graph():
    model, audio = valid_model(), signal(3)
    scores = model.score_strided(audio, 1600)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone._scoring_graph._session is None
        torch.testing.assert_close(clone.score_strided(audio, 1600), scores, atol=1e-5, rtol=0)


def test_not_used_in_training_mode_nor_when_turned_off(monkeypatch):
    model = valid_model()
    power = (np.random.default_rng(0).random((2, 80, 48)) * -6).astype(np.float32)
    model.train()
    assert model._scoring_graph(model, power) is None
    model.eval()
    monkeypatch.setenv("WAKEWORD_ENCODER_BACKEND", "torch")
    assert model._scoring_graph(model, power) is None
    monkeypatch.delenv("WAKEWORD_ENCODER_BACKEND")
    graphed = model._scoring_graph(model, power)
    with torch.no_grad():
        reference = _normalised_network(model, torch.from_numpy(power)).numpy()
    np.testing.assert_allclose(graphed, reference, atol=1e-5, rtol=0)
    assert model._scoring_graph(model, power[:, :, :47].copy()) is None  # another window length: torch
    assert model._scoring_graph(model, power.astype(np.float64)) is None  # another dtype: torch
    model.double()
    assert model._scoring_graph(model, power) is None  # float64 weights: a float32 graph cannot stand for them
