"""Kaldi's analysis windows and mel filter banks, and the real DFT as a matrix.

Shared by the Kaldi :class:`~r2n_audio.features.fbank.Fbank` and the SpeechBrain front-end
(whose export path uses :func:`real_dft`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from r2n_audio.errors import R2NError

__all__ = ["EPS", "WINDOW_TYPES", "kaldi_mel_banks", "kaldi_window", "mel_bands", "real_dft"]

WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "blackman")
# Kaldi floors log arguments at float32 epsilon whatever the dtype (torchaudio does the same).
EPS = torch.finfo(torch.float32).eps


def _mel(freq: Tensor) -> Tensor:
    return 1127.0 * (1.0 + freq / 700.0).log()


def kaldi_mel_banks(num_bins: int, padded_window_size: int, sample_frequency: float,
                    low_freq: float, high_freq: float) -> Tensor:
    """Kaldi's triangular mel filters (linear in mel), without VTLN.

    Computed in float32 as Kaldi (``MelBanks``, BaseFloat) and torchaudio do: the rounding of
    the mel edges moves weights by up to ~1e-5, which shows in float64 comparisons.

    Returns
    -------
    banks : Tensor (num_bins, padded_window_size // 2 + 1), float32
        Weights on the rfft bins; the Nyquist bin has weight 0, as in Kaldi.
    """
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist  # Kaldi: a non-positive high_freq is an offset from Nyquist
    if num_bins <= 3:
        raise R2NError(f"num_mel_bins must be at least 4, got {num_bins}")
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise R2NError(f"bad mel range: low_freq {low_freq} and high_freq {high_freq} must satisfy "
                       f"0 <= low < high <= Nyquist ({nyquist} Hz)")
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins).unsqueeze(1)
    left, center, right = (mel_low + (bins + k) * delta for k in (0.0, 1.0, 2.0))
    fft_mel = _mel(sample_frequency / padded_window_size
                   * torch.arange(padded_window_size // 2, dtype=torch.float32)).unsqueeze(0)
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return nn.functional.pad(banks, (0, 1))


def mel_bands(mel: Tensor, filters_per_band: int = 16) -> list[tuple[slice, slice]]:
    """Split the mel matrix (rows, filters) into bands of filters and the rows they use.

    Each triangle spans a few FFT bins, so a product band by band skips most of the zeros.
    """
    used = torch.nonzero(mel)
    bands = []
    for first in range(0, mel.shape[1], filters_per_band):
        cols = slice(first, min(first + filters_per_band, mel.shape[1]))
        rows = used[(used[:, 1] >= cols.start) & (used[:, 1] < cols.stop), 0]
        rows = slice(int(rows.min()), int(rows.max()) + 1) if rows.numel() else slice(0, 1)
        bands.append((rows, cols))
    return bands


def real_dft(size: int, fft_size: int, device: torch.device | None = None) -> Tensor:
    """Real DFT of ``size`` samples zero-padded to ``fft_size`` as a float64 matrix.

    Returns
    -------
    basis : Tensor (size, 2 * (fft_size // 2 + 1)), float64
        ``[cos | -sin]``: ``frames @ basis`` gives the real and imaginary parts side by side.
        Export paths use it because not every ONNX runtime implements a complex FFT.
    """
    n = torch.arange(size, dtype=torch.float64, device=device).unsqueeze(1)
    k = torch.arange(fft_size // 2 + 1, dtype=torch.float64, device=device)
    angle = (2 * math.pi / fft_size) * torch.remainder(n * k, fft_size)  # small, exact angles
    return torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1)


def kaldi_window(window_type: str, size: int, blackman_coeff: float = 0.42) -> Tensor:
    """Kaldi's analysis windows (symmetric), float64 (size,)."""
    n = torch.arange(size, dtype=torch.float64)
    a = 2 * math.pi / (size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * torch.cos(a * n)
    if window_type == "povey":  # a Hann window raised to 0.85: zero at both ends
        return (0.5 - 0.5 * torch.cos(a * n)).pow(0.85)
    if window_type == "hamming":
        return 0.54 - 0.46 * torch.cos(a * n)
    if window_type == "rectangular":
        return torch.ones(size, dtype=torch.float64)
    return blackman_coeff - 0.5 * torch.cos(a * n) + (0.5 - blackman_coeff) * torch.cos(2 * a * n)
