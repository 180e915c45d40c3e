import shutil
import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from wakeword.encoders.ct2 import CT2FormatError, ct2_whisper_state_dict, read_ct2_model, whisper_config_kwargs

ctranslate2 = pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """A tiny random transformers Whisper saved locally, and ctranslate2's own conversion of it."""
    root = tmp_path_factory.mktemp("ct2")
    config = WhisperConfig(
        vocab_size=80,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=24,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():  # random biases everywhere but K (Whisper has no K bias), so mixing them up shows
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_()
    model.save_pretrained(root / "hf")
    converter = ctranslate2.converters.TransformersConverter(str(root / "hf"), load_as_float16=False)
    converter.convert(str(root / "ct2"), quantization="float32")
    return model, root


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
    assert whisper_config_kwargs(ct2)["encoder_layers"] == 2 and whisper_config_kwargs(ct2)["d_model"] == 16
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
    shutil.copy(tmp_path / "v9.bin", tmp_path / "copy.bin")
