"""The one log-mel front end, shared by training, streaming, scoring and export.

Whisper-compatible: 80 slaney mels over a 25 ms Hann window every 10 ms, log10 power, floored at
(max - 8) PER SAMPLE (Whisper computes the floor per utterance; a batch-wide max would let one
loud clip change every other clip's features), then scaled by (x + 4) / 4.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from wakeword.audio import HOP_LENGTH, N_FFT, N_MELS
from wakeword.frames import LOG_POWER_FLOOR, N_FREQS, mel_filter_bank, n_valid_frames

LOG_FLOOR_RANGE = 8.0  # Whisper keeps 8 decades (80 dB) below each clip's loudest bin


def mel_filters(n_mels: int = N_MELS) -> torch.Tensor:
    """Slaney mel filter bank, shape (n_freqs=N_FFT // 2 + 1, n_mels): frames.mel_filter_bank, the one definition
    that training, scoring and the torch-free runtime all use."""
    return torch.from_numpy(mel_filter_bank(n_mels))


def n_frames(n_samples: int) -> int:
    """Number of mel frames for `n_samples` of audio (Whisper drops the last centred frame)."""
    return n_samples // HOP_LENGTH


@lru_cache(maxsize=2)
def dft_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    """The Hann-windowed real DFT folded in half: (cosines (N_FFT // 2, N_FREQS), minus sines (N_FFT // 2 - 1,
    N_FREQS)), for frame samples n = 1..N_FFT/2 and n = 1..N_FFT/2 - 1.

    The periodic Hann window and the cosines are symmetric about N_FFT / 2 and the sines antisymmetric, and
    the window is 0 at n = 0, so the real part is the cosines times x[n] + x[N_FFT - n] (and x[N_FFT / 2]
    once) and the imaginary part the sines times x[n] - x[N_FFT - n]: half the multiplications of the full
    (N_FFT, 2 * N_FREQS) product, the same numbers to float32 rounding."""
    n = torch.arange(1, N_FFT // 2 + 1, dtype=torch.float64)[:, None]
    k = torch.arange(N_FREQS, dtype=torch.float64)
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)[1 : N_FFT // 2 + 1, None]
    cosines = window * torch.cos(2 * torch.pi * n * k / N_FFT)
    sines = -(window * torch.sin(2 * torch.pi * n * k / N_FFT))[:-1]
    return cosines.float(), sines.float()


def stft_power(batch: torch.Tensor) -> torch.Tensor:
    """|STFT|^2 of (batch, n_samples) -> (batch, N_FREQS, n_samples // HOP_LENGTH), centred, reflect-padded."""
    window = torch.hann_window(N_FFT, device=batch.device, dtype=batch.dtype)
    stft = torch.stft(batch, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
    return stft[..., :-1].abs() ** 2


def stft_power_frames(batch: torch.Tensor, centred: bool = True) -> torch.Tensor:
    """|STFT|^2 like stft_power but time-major, (batch, n_samples // HOP_LENGTH, N_FREQS), computed as two
    matrix products of the audio frames with fixed Hann-windowed DFT matrices (dft_matrices):
    real-valued ops only, so it exports to ONNX (torch.stft's complex output does not), and plain MatMuls
    are the cheapest STFT there. With centred=False, the frames of n_valid_frames: no padding.

    Frames are cut without a gather: the padded audio is reshaped into hop-sized chunks, and frame i is
    chunks i and i+1 and the first N_FFT - 2 * HOP_LENGTH samples of chunk i+2."""
    if centred:
        n_frames = batch.shape[-1] // HOP_LENGTH
        padded = torch.nn.functional.pad(batch[:, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[:, 0]
    else:  # zeros after the last frame's end only complete the last chunk: no frame reads them
        n_frames = n_valid_frames(batch.shape[-1])
        padded = torch.nn.functional.pad(batch, (0, max(0, (n_frames + 2) * HOP_LENGTH - batch.shape[-1])))
    chunks = padded[:, : (n_frames + 2) * HOP_LENGTH].reshape(batch.shape[0], n_frames + 2, HOP_LENGTH)
    tail = N_FFT - 2 * HOP_LENGTH
    frames = torch.cat([chunks[:, :n_frames], chunks[:, 1 : n_frames + 1], chunks[:, 2:, :tail]], dim=2)
    half = N_FFT // 2
    mirrored = frames[..., half + 1 :].flip(-1)  # x[N_FFT - n] for n = 1..half - 1
    cosines, sines = (m.to(device=batch.device, dtype=batch.dtype) for m in dft_matrices())
    even = torch.cat([frames[..., 1:half] + mirrored, frames[..., half : half + 1]], dim=-1)
    real, imaginary = even @ cosines, (frames[..., 1:half] - mirrored) @ sines
    return real**2 + imaginary**2


def log_mel(audio: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel spectrogram.

    audio: (n_samples,) or (batch, n_samples) float32 at 16 kHz.
    Returns (n_mels, n_frames) or (batch, n_mels, n_frames), n_frames = n_samples // 160.
    Differentiable with respect to `audio`. While torch.onnx.export traces it, the STFT runs as a
    matrix product (stft_power_frames), which equals torch.stft to float32 rounding.
    """
    squeeze = audio.dim() == 1
    batch = audio.unsqueeze(0) if squeeze else audio
    filters = mel_filters(n_mels).to(device=batch.device, dtype=batch.dtype)
    if torch.onnx.is_in_onnx_export():
        mel = (stft_power_frames(batch) @ filters).transpose(1, 2)  # matrix products only (see stft_power_frames)
    else:
        mel = torch.einsum("bft,fm->bmt", stft_power(batch), filters)
    log_spec = normalise_log_mel(torch.clamp(mel, min=LOG_POWER_FLOOR).log10())
    return log_spec[0] if squeeze else log_spec


def normalise_log_mel(log_spec: torch.Tensor) -> torch.Tensor:
    """log10 mel power (batch, n_mels, n_frames) -> floored at its own maximum - 8 PER SAMPLE, scaled (x + 4) / 4."""
    per_sample_max = log_spec.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(log_spec, per_sample_max - LOG_FLOOR_RANGE) + 4.0) / 4.0


def log_mel_power_frames(signal: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """log10 mel power of every analysis frame wholly inside each signal, not yet normalised.

    signal: (batch, n_samples) float32 16 kHz -> (batch, n_mels, n_valid_frames(n_samples)). No padding, so a
    frame's values depend only on its own 25 ms: the frames of a window cut from a longer signal at a multiple
    of HOP_LENGTH are a slice of the longer signal's frames (what streaming shares between overlapping windows).
    """
    filters = mel_filters(n_mels).to(device=signal.device, dtype=signal.dtype)
    power = stft_power_frames(signal, centred=False)  # (batch, n_frames, n_freqs): exports to ONNX as it is
    return torch.clamp(power @ filters, min=LOG_POWER_FLOOR).log10().transpose(1, 2)


def valid_log_mel(audio: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """log_mel without padding: (batch, n_samples) -> (batch, n_mels, n_valid_frames(n_samples)), normalised per
    window as log_mel is. Equal, to float32 rounding, to normalise_log_mel of a slice of a longer signal's
    log_mel_power_frames (see wakeword.models.e2e, framing "valid")."""
    return normalise_log_mel(log_mel_power_frames(audio, n_mels))
