import struct

import numpy as np
import pytest
import torch

from wakeword.encoders.ct2 import (
    CT2FormatError,
    ct2_whisper_state_dict,
    read_ct2_config,
    read_ct2_model,
    whisper_config_kwargs,
)

ctranslate2 = pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def tiny_pair(tiny_whisper):
    return tiny_whisper


def test_reader_parses_header_variables_and_aliases(tiny_pair):
    _, root = tiny_pair
    ct2 = read_ct2_model(root / "ct2" / "model.bin")
    assert ct2.spec_name == "WhisperSpec"
    assert ct2.variables["encoder/conv1/weight"].shape == (16, 80, 3)
    assert ct2.variables["encoder/conv1/weight"].dtype == np.float32
    assert ct2.get("decoder/projection/weight") is ct2.variables[ct2.aliases["decoder/projection/weight"]]


def test_round_trip_gives_equal_weights(tiny_pair):
    model, root = tiny_pair
    ct2 = read_ct2_model(root / "ct2" / "model.bin")
    derived = whisper_config_kwargs(ct2, read_ct2_config(root / "ct2" / "config.json"))
    for key, value in derived.items():  # every derived field, shapes and suppressed tokens, as saved
        assert getattr(model.config, key) == value, key
    state = ct2_whisper_state_dict(ct2)
    expected = model.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_float16_is_widened(tmp_path, tiny_pair):
    model, root = tiny_pair
    ctranslate2.converters.TransformersConverter(str(root / "hf")).convert(str(tmp_path / "h"), quantization="float16")
    state = ct2_whisper_state_dict(read_ct2_model(tmp_path / "h" / "model.bin"))
    weight = model.state_dict()["model.encoder.conv1.weight"]
    assert state["model.encoder.conv1.weight"].dtype == torch.float32
    torch.testing.assert_close(state["model.encoder.conv1.weight"], weight.half().float())


def test_extra_variable_is_an_error(tiny_pair):
    ct2 = read_ct2_model(tiny_pair[1] / "ct2" / "model.bin")
    ct2.variables["encoder/mystery"] = np.zeros(3, np.float32)
    with pytest.raises(CT2FormatError, match="unmapped CTranslate2 variable 'encoder/mystery'"):
        ct2_whisper_state_dict(ct2)


def test_missing_variable_is_an_error_naming_it(tiny_pair):
    ct2 = read_ct2_model(tiny_pair[1] / "ct2" / "model.bin")
    del ct2.variables["decoder/layer_1/attention/linear_2/bias"]
    with pytest.raises(CT2FormatError, match="missing CTranslate2 variable 'decoder/layer_1/attention/linear_2/bias'"):
        ct2_whisper_state_dict(ct2)


def test_nonzero_k_bias_is_an_error(tiny_pair):
    ct2 = read_ct2_model(tiny_pair[1] / "ct2" / "model.bin")
    fused = ct2.variables["encoder/layer_0/self_attention/linear_0/bias"]
    fused[16:32] = 1.0  # the K third of the fused QKV bias
    with pytest.raises(CT2FormatError, match="K bias is not zero"):
        ct2_whisper_state_dict(ct2)


def test_truncated_and_foreign_files(tmp_path, tiny_pair):
    data = (tiny_pair[1] / "ct2" / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CT2FormatError, match=r"cut\.bin: .*(truncated|end of file)"):
        read_ct2_model(tmp_path / "cut.bin")
    (tmp_path / "v9.bin").write_bytes(struct.pack("<I", 9) + data[4:])
    with pytest.raises(CT2FormatError, match="binary version 9"):
        read_ct2_model(tmp_path / "v9.bin")
    with pytest.raises(CT2FormatError, match=r"nothere\.bin"):
        read_ct2_model(tmp_path / "nothere.bin")
