"""benchmarks/int8_real_world.py splits an int8 export at the encoder output: the two parts must compose to
the whole graph, since the benchmark encodes every window once with the encoder part and scores each model's
head part on those frames."""

import sys
from pathlib import Path

import numpy as np
import torch

from wakeword.checkpoint import save_detector
from wakeword.export import export_detector
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from int8_real_world import run_each, session, split_graph  # a benchmark script, not a package


def test_int8_encoder_then_head_equals_the_whole_graph(tmp_path, tiny_whisper_dir):
    torch.manual_seed(0)
    encoder = {"name": str(tiny_whisper_dir), "trainable": "head"}
    config = DetectorConfig(family="transfer", wake_words=("jarvis",), encoder=encoder, head={"n_members": 2})
    model_dir = save_detector(get_family("transfer").build_model(config), tmp_path / "model")
    export_detector(model_dir, tmp_path / "int8", int8=True)
    encoder_graph, head_graph, tensor = split_graph(tmp_path / "int8" / "model.onnx", tmp_path / "split")
    assert tensor == "/encoder/layer_norm/LayerNormalization_output_0"
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((6, config.window_samples)) * [[0.01], [0.1], [0.3], [0.01], [1.0], [0.05]]
    whole = run_each(session(tmp_path / "int8" / "model.onnx"), windows)
    frames = run_each(session(encoder_graph), windows)
    assert frames.shape[-1] == 32  # the tiny whisper's d_model: the cut is at the encoder's output
    np.testing.assert_allclose(run_each(session(head_graph), frames), whole, atol=1e-5, rtol=0)
    batched = run_each(session(head_graph), run_each(session(encoder_graph), windows, 3), 3)  # 3 windows a call
    np.testing.assert_allclose(batched, run_each(session(tmp_path / "int8" / "model.onnx"), windows, 3), atol=1e-5)
