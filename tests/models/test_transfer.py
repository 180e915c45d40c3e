import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from wakeword.checkpoint import ModelError, load_detector, read_config, rollback_detector, save_detector
from wakeword.models.base import DetectorConfig
from wakeword.models.transfer import TransferDetector, build_model, compute_loss


def config_for(encoder_dir, trainable="head", top_k=0, words=("hey computer", "jarvis")):
    return DetectorConfig(
        family="transfer",
        wake_words=words,
        window_seconds=1.0,
        hop_seconds=0.1,
        encoder={"name": str(encoder_dir), "revision": None, "trainable": trainable, "top_k": top_k},
        head={"hidden": [16, 8], "dropout": 0.1, "n_attention_heads": 2},
    )


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_head_only_freezes_the_encoder(tiny_whisper_dir):
    model = build_model(config_for(tiny_whisper_dir))
    names = trainable_names(model)
    assert names and all(n.startswith("head.") for n in names)
    logits = model(torch.randn(3, 16000) * 0.1)
    assert logits.shape == (3, 2)


def test_cached_frames_give_the_same_logits_as_audio(tiny_whisper_dir):
    model = build_model(config_for(tiny_whisper_dir)).eval()
    audio = torch.randn(2, 16000) * 0.1
    torch.testing.assert_close(model(model.encode(audio)), model(audio))


def test_top_k_and_full_unfreeze_layers(tiny_whisper_dir):
    top = trainable_names(build_model(config_for(tiny_whisper_dir, "top-k", top_k=1)))
    assert any(".layers.2." in n for n in top) and not any(".layers.0." in n or ".layers.1." in n for n in top)
    full = trainable_names(build_model(config_for(tiny_whisper_dir, "full")))
    assert any(".layers.0." in n for n in full) and any("conv1" in n for n in full)


def test_new_head_is_randomly_initialised(tiny_whisper_dir):
    torch.manual_seed(1)
    a = build_model(config_for(tiny_whisper_dir)).head.mlp[0].weight
    torch.manual_seed(2)
    b = build_model(config_for(tiny_whisper_dir)).head.mlp[0].weight
    assert not torch.equal(a, b)


def test_loss_only_on_labelled_words(tiny_whisper_dir):
    model = build_model(config_for(tiny_whisper_dir))
    batch = {
        "audio": torch.randn(2, 16000) * 0.1,
        "labels": torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
        "mask": torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
    }
    compute_loss(model, batch).backward()
    last = model.head.mlp[-1]
    assert last.weight.grad[0].abs().sum() > 0 and last.weight.grad[1].abs().sum() == 0


SCORE_IN_NEW_PROCESS = textwrap.dedent(
    """
    import sys, json, torch
    from wakeword import load_detector
    torch.manual_seed(0)
    audio = torch.randn(2, 16000) * 0.1
    print(json.dumps(load_detector(sys.argv[1]).score(audio).tolist()))
    """
)


@pytest.mark.parametrize("trainable", ["head", "full"])
def test_saved_detector_scores_identically_in_another_process(tiny_whisper_dir, tmp_path, trainable):
    model = build_model(config_for(tiny_whisper_dir, trainable)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # as if trained: only what the strategy lets learn changes
                p.add_(0.01 * torch.randn_like(p))
    save_detector(model, tmp_path / "m")
    torch.manual_seed(0)
    expected = model.score(torch.randn(2, 16000) * 0.1)
    out = subprocess.run(
        [sys.executable, "-c", SCORE_IN_NEW_PROCESS, str(tmp_path / "m")], capture_output=True, text=True, check=True
    )
    np.testing.assert_allclose(json.loads(out.stdout), expected.numpy(), rtol=0, atol=1e-6)
    n_saved = len(__import__("safetensors.torch").torch.load_file(tmp_path / "m" / "model.safetensors"))
    assert (n_saved < len(model.state_dict())) == (trainable == "head")  # head-only models store only the head


def test_model_directory_errors(tiny_whisper_dir, tmp_path):
    model = build_model(config_for(tiny_whisper_dir))
    path = save_detector(model, tmp_path / "m")
    config = json.loads((path / "config.json").read_text())

    def broken(**changes):
        (path / "config.json").write_text(json.dumps({**config, **changes}))

    broken(format_version=99)
    with pytest.raises(ModelError, match="format_version 99 is newer"):
        read_config(path)
    broken(family="magic")
    with pytest.raises(ModelError, match="unknown model family 'magic'"):
        load_detector(path)
    broken(wake_words=["a", "b", "c"])  # head now needs 3 outputs: the saved weights have 2
    with pytest.raises(ModelError, match=r"weight 'head\.mlp\.\d+\.(weight|bias)' has shape"):
        load_detector(path)
    broken()
    from safetensors.torch import load_file, save_file

    state = load_file(path / "model.safetensors")
    state.pop("head.norm.weight")
    save_file(state, path / "model.safetensors")
    with pytest.raises(ModelError, match=r"missing weight 'head.norm.weight'"):
        load_detector(path)
    pickle = tmp_path / "model.pt"
    torch.save(model.state_dict(), pickle)
    with pytest.raises(ModelError, match="not a single file"):
        load_detector(pickle)
    (path / "model.safetensors").write_bytes(pickle.read_bytes())  # a pickle renamed: refused, never unpickled
    with pytest.raises(ModelError, match="not a valid safetensors"):
        load_detector(path)


def test_keep_previous_and_rollback(tiny_whisper_dir, tmp_path):
    first = build_model(config_for(tiny_whisper_dir))
    save_detector(first, tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    second = build_model(config_for(tiny_whisper_dir))
    save_detector(second, tmp_path / "m", keep_previous=True)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() != before
    rollback_detector(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    with pytest.raises(ModelError, match="no previous version"):
        rollback_detector(tmp_path / "m")


def test_transfer_detector_needs_an_encoder_name():
    with pytest.raises(ValueError, match=r"encoder.name"):
        TransferDetector(DetectorConfig(family="transfer", wake_words=("a",), encoder={"trainable": "head"}))


def ensemble_config(encoder_dir, n_members=3):
    base = config_for(encoder_dir)
    return DetectorConfig(**{**base.__dict__, "head": {**base.head, "n_members": n_members}})


def test_ensemble_head_scores_the_mean_of_its_members(tiny_whisper_dir):
    """The ensemble computes the members' frame work once (see HeadEnsemble): the same numbers as each member
    alone, also where a LayerNorm scale is negative (max pooling then takes the frames' minimum)."""
    model = build_model(ensemble_config(tiny_whisper_dir)).eval()
    with torch.no_grad():
        for member in model.head.members:
            member.norm.weight.normal_()
            member.norm.bias.normal_()
    assert (model.head.members[0].norm.weight < 0).any()
    frames = model.encode(torch.randn(2, 16000) * 0.1)
    members = torch.stack([member(frames) for member in model.head.members])  # (3, batch, n_words)
    assert members.shape == (3, 2, 2)
    assert not torch.allclose(members[0], members[1])  # different random starts
    torch.testing.assert_close(model.head.member_logits(frames), members, rtol=0, atol=1e-5)
    torch.testing.assert_close(model(frames), members.mean(dim=0), rtol=0, atol=1e-5)


def test_each_member_learns_on_its_own_loss(tiny_whisper_dir):
    """The loss is the mean of the members' losses, not the loss of their mean logit (hand-checked)."""
    model = build_model(ensemble_config(tiny_whisper_dir)).eval()
    frames = model.encode(torch.randn(2, 16000) * 0.1)
    labels, mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2, 2)
    loss = compute_loss(model, {"features": frames, "labels": labels, "mask": mask})
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    per_member = [bce(member(frames), labels) for member in model.head.members]
    torch.testing.assert_close(loss, torch.stack(per_member).mean())
    assert not torch.allclose(loss, bce(model(frames), labels))


def test_ensemble_saves_and_loads(tiny_whisper_dir, tmp_path):
    model = build_model(ensemble_config(tiny_whisper_dir)).eval()
    save_detector(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["head"]["n_members"] == 3
    audio = torch.randn(2, 16000) * 0.1
    torch.testing.assert_close(load_detector(tmp_path / "m").score(audio), model.score(audio))
    with pytest.raises(ValueError, match="n_members must be >= 1"):
        build_model(ensemble_config(tiny_whisper_dir, n_members=0))


def test_ensemble_exports_to_one_onnx_graph(tiny_whisper_dir, tmp_path):
    from wakeword.export import export_detector
    from wakeword.runtime import load_runtime

    model = build_model(ensemble_config(tiny_whisper_dir)).eval()
    export_detector(save_detector(model, tmp_path / "m"), tmp_path / "onnx")
    windows = torch.randn(3, 16000) * 0.1
    runtime = load_runtime(tmp_path / "onnx", threads=1)
    np.testing.assert_allclose(runtime.logits(windows.numpy()), model(windows).detach().numpy(), atol=1e-4)


def anchored_config(encoder_dir, n_members=3, n_anchor=1):
    base = ensemble_config(encoder_dir, n_members)
    return DetectorConfig(**{**base.__dict__, "head": {**base.head, "n_anchor_members": n_anchor}})


def test_anchor_members_skip_the_users_recordings(tiny_whisper_dir):
    """The last n_anchor_members members' loss leaves out windows flagged recorded (hand-checked), and they
    get no gradient from a batch of recordings alone, while the other members learn from it."""
    model = build_model(anchored_config(tiny_whisper_dir)).eval()
    frames = model.encode(torch.randn(2, 16000) * 0.1)
    labels, mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2, 2)
    recorded = torch.tensor([1.0, 0.0])
    loss = compute_loss(model, {"features": frames, "labels": labels, "mask": mask, "recorded": recorded})
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    members = model.head.members
    expected = [bce(members[0](frames), labels), bce(members[1](frames), labels), bce(members[2](frames)[1], labels[1])]
    torch.testing.assert_close(loss, torch.stack(expected).mean())

    compute_loss(model, {"features": frames, "labels": labels, "mask": mask, "recorded": torch.ones(2)}).backward()
    assert all(p.grad is None or not p.grad.any() for p in members[2].parameters())
    assert all(p.grad is not None and p.grad.any() for p in members[0].mlp.parameters())


def test_anchor_members_need_a_member_that_learns_from_recordings(tiny_whisper_dir, tmp_path):
    for n_members, n_anchor in ((3, 3), (1, 1), (3, -1)):
        with pytest.raises(ValueError, match="n_anchor_members must be >= 0 and below n_members"):
            build_model(anchored_config(tiny_whisper_dir, n_members, n_anchor))
    model = build_model(anchored_config(tiny_whisper_dir, 4, 1)).eval()
    save_detector(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["head"]["n_anchor_members"] == 1
    assert load_detector(tmp_path / "m").head.n_anchor_members == 1
