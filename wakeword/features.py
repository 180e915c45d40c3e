"""The one log-mel front end, shared by training, streaming, scoring and export.

Whisper-compatible: 80 slaney mels over a 25 ms Hann window every 10 ms, log10 power, floored at
(max - 8) PER SAMPLE (Whisper computes the floor per utterance; a batch-wide max would let one
loud clip change every other clip's features), then scaled by (x + 4) / 4.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torchaudio

from wakeword.audio import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE

LOG_FLOOR_RANGE = 8.0  # Whisper keeps 8 decades (80 dB) below each clip's loudest bin
N_FREQS = N_FFT // 2 + 1


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS) -> torch.Tensor:
    """Slaney mel filter bank, shape (n_freqs=N_FFT // 2 + 1, n_mels)."""
    return torchaudio.functional.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=n_mels,
        sample_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )


def n_frames(n_samples: int) -> int:
    """Number of mel frames for `n_samples` of audio (Whisper drops the last centred frame)."""
    return n_samples // HOP_LENGTH


@lru_cache(maxsize=2)
def dft_kernels() -> torch.Tensor:
    """Hann-windowed DFT as convolution weights, (2 * N_FREQS, 1, N_FFT): cosines, then minus sines."""
    n = torch.arange(N_FFT, dtype=torch.float64)
    k = torch.arange(N_FREQS, dtype=torch.float64)[:, None]
    angle = 2 * torch.pi * k * n / N_FFT
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    return (torch.cat([torch.cos(angle), -torch.sin(angle)]) * window)[:, None].float()


def stft_power(batch: torch.Tensor) -> torch.Tensor:
    """|STFT|^2 of (batch, n_samples) -> (batch, N_FREQS, n_samples // HOP_LENGTH), centred, reflect-padded."""
    window = torch.hann_window(N_FFT, device=batch.device, dtype=batch.dtype)
    stft = torch.stft(batch, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
    return stft[..., :-1].abs() ** 2


def stft_power_conv(batch: torch.Tensor) -> torch.Tensor:
    """The same as stft_power, as one conv1d with fixed DFT kernels: real-valued ops only, so it exports
    to ONNX (torch.stft's complex output does not) and runs in any ONNX runtime."""
    padded = torch.nn.functional.pad(batch[:, None], (N_FFT // 2, N_FFT // 2), mode="reflect")
    kernels = dft_kernels().to(device=batch.device, dtype=batch.dtype)
    spectrum = torch.nn.functional.conv1d(padded, kernels, stride=HOP_LENGTH)[..., :-1]
    return spectrum[:, :N_FREQS] ** 2 + spectrum[:, N_FREQS:] ** 2


def log_mel(audio: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel spectrogram.

    audio: (n_samples,) or (batch, n_samples) float32 at 16 kHz.
    Returns (n_mels, n_frames) or (batch, n_mels, n_frames), n_frames = n_samples // 160.
    Differentiable with respect to `audio`. While torch.onnx.export traces it, the STFT runs as a
    convolution (stft_power_conv), which equals torch.stft to float32 rounding.
    """
    squeeze = audio.dim() == 1
    batch = audio.unsqueeze(0) if squeeze else audio
    power = stft_power_conv(batch) if torch.onnx.is_in_onnx_export() else stft_power(batch)  # (batch, F, T)
    filters = mel_filters(n_mels).to(device=batch.device, dtype=batch.dtype)
    mel = torch.einsum("bft,fm->bmt", power, filters)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    per_sample_max = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, per_sample_max - LOG_FLOOR_RANGE)
    log_spec = (log_spec + 4.0) / 4.0
    return log_spec[0] if squeeze else log_spec
