"""SpeechBrain's ``Fbank`` + sentence mean normalisation, reproduced exactly, batched and padding-safe.

SpeechBrain's pretrained speaker models (``spkrec-ecapa-voxceleb``) were trained on features that
are *not* Kaldi fbank (see REFERENCE.md section 3): a centred STFT (200 zeros each side), a
periodic Hamming window of 400 samples, ``n_fft`` 400 (201 bins), HTK mel points with triangles
built in Hz, ``10 * log10(max(x, 1e-10))`` floored at the utterance's maximum minus 80 dB, then
``InputNormalization(norm_type="sentence", std_norm=False)`` (mean over valid frames only).
Importing such a model therefore needs this front-end, not Kaldi fbank with options.

Unlike SpeechBrain's own modules (whose padded batches change the result, SpeechBrain issue
#1374), every statistic here (the dB floor, the mean) is taken over an utterance's valid frames
only, and samples past an utterance's length are zeroed first, so an utterance gives the same
features alone or in a padded batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from r2n_audio.features.spectral import real_dft

__all__ = ["SpeechBrainFrontend"]


class SpeechBrainFrontend(nn.Module):
    """SpeechBrain ``Fbank(n_mels=...)`` + sentence mean normalisation.

    Parameters
    ----------
    sample_rate : int
        Input rate in Hz.
    n_mels : int
        Number of mel filters (80 for the ECAPA models).
    n_fft : int
        FFT size; also the window length SpeechBrain uses for 25 ms at 16 kHz.
    win_length : float
        Window length in ms (25).
    hop_length : float
        Hop in ms (10).
    f_min, f_max : float
        Filterbank edges in Hz (``f_max=None`` means ``sample_rate // 2``).
    amin : float
        Power floor before the log.
    top_db : float
        Dynamic range kept below each utterance's maximum.
    mean_norm : bool
        Subtract each utterance's mean over its valid frames (SpeechBrain's sentence norm).

    Examples
    --------
    >>> fe = SpeechBrainFrontend()
    >>> feats, frames = fe(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    >>> tuple(feats.shape), frames.tolist()
    ((2, 101, 80), [101, 51])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 400,
        win_length: float = 25.0,
        hop_length: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        amin: float = 1e-10,
        top_db: float = 80.0,
        mean_norm: bool = True,
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.n_fft = int(n_fft)
        self.win_length_ms = float(win_length)
        self.hop_length_ms = float(hop_length)
        self.f_min = float(f_min)
        self.f_max = float(sample_rate // 2 if f_max is None else f_max)
        self.amin = float(amin)
        self.top_db = float(top_db)
        self.mean_norm = bool(mean_norm)
        # SpeechBrain's ms -> samples conversion, rounding included.
        self.win_samples = int(round(sample_rate / 1000.0 * win_length))
        self.hop = int(round(sample_rate / 1000.0 * hop_length))
        self.register_buffer("window", torch.hamming_window(self.win_samples), persistent=False)
        self.register_buffer("mel_matrix", self._mel_matrix(), persistent=False)
        self.register_buffer("dft_basis", self._dft_basis(), persistent=False)

    # ------------------------------------------------------------------ construction
    def _mel_matrix(self) -> torch.Tensor:
        """Triangles in Hz around HTK mel points, in SpeechBrain's float32 arithmetic: (n_stft, n_mels)."""
        to_mel = lambda hz: 2595 * math.log10(1 + hz / 700)  # noqa: E731
        mel = torch.linspace(to_mel(self.f_min), to_mel(self.f_max), self.n_mels + 2)
        hz = 700 * (10 ** (mel / 2595) - 1)
        band = (hz[1:] - hz[:-1])[:-1]
        f_central = hz[1:-1]
        all_freqs = torch.linspace(0, self.sample_rate // 2, self.n_fft // 2 + 1)
        slope = (all_freqs[None, :] - f_central[:, None]) / band[:, None]
        zero = torch.zeros(1)
        return torch.max(zero, torch.min(slope + 1.0, -slope + 1.0)).transpose(0, 1).contiguous()

    def _dft_basis(self) -> torch.Tensor:
        """Windowed real DFT as one float64 matrix (n_fft, 2 * n_stft), for graph export.

        ONNX has no complex FFT that every runtime implements; a float64 matmul is exact enough
        that the exported graph matches the eager ``torch.stft`` path to float32 rounding.
        """
        win = torch.zeros(self.n_fft, dtype=torch.float64)
        offset = (self.n_fft - self.win_samples) // 2  # torch.stft centres a shorter window
        win[offset:offset + self.win_samples] = torch.hamming_window(
            self.win_samples, dtype=torch.float64)
        return win[:, None] * real_dft(self.n_fft, self.n_fft)

    # ------------------------------------------------------------------ forward
    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frame counts ``1 + N // hop`` of a centred STFT, for sample counts ``lengths`` (B,)."""
        return torch.div(lengths, self.hop, rounding_mode="floor") + 1

    def _power(self, wav: torch.Tensor) -> torch.Tensor:
        """Power spectrogram (B, T, n_stft) of a centred, zero-padded STFT."""
        if torch.onnx.is_in_onnx_export():
            # Framing by gather, not unfold: ONNX cannot export unfold over a dynamic length.
            half = self.n_fft // 2
            padded = nn.functional.pad(wav, (half, half))
            n_frames = torch.div(padded.shape[1] - self.n_fft, self.hop, rounding_mode="floor") + 1
            index = (torch.arange(n_frames, device=wav.device)[:, None] * self.hop
                     + torch.arange(self.n_fft, device=wav.device)[None, :])
            spec = padded[:, index].double() @ self.dft_basis
            re, im = spec.chunk(2, dim=-1)
            return (re * re + im * im).float()
        stft = torch.stft(wav, self.n_fft, self.hop, self.win_samples, self.window, center=True,
                          pad_mode="constant", normalized=False, onesided=True,
                          return_complex=True)
        return torch.view_as_real(stft).pow(2).sum(-1).transpose(1, 2)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute normalised log-mel features.

        Parameters
        ----------
        waveforms : (B, N) torch.Tensor
            Float waveforms in [-1, 1] at ``sample_rate``, zero- or garbage-padded past ``lengths``.
        lengths : (B,) torch.Tensor, optional
            Valid sample counts; ``None`` means every row is full length.

        Returns
        -------
        feats : (B, T, n_mels) torch.Tensor
            Features; frames past an utterance's length are 0.
        frame_lengths : (B,) torch.Tensor
            Valid frame counts (int64).
        """
        with torch.autocast(waveforms.device.type, enabled=False):
            return self._forward(waveforms.float(), lengths)

    def _forward(
        self, wav: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n = wav.shape
        if lengths is None:
            lengths = torch.full((batch,), n, dtype=torch.long, device=wav.device)
        lengths = lengths.to(device=wav.device, dtype=torch.long)
        # Zero the padding so the last valid frames see the same zeros as the centred STFT of
        # the utterance alone.
        wav = wav * (torch.arange(n, device=wav.device)[None, :] < lengths[:, None])
        power = self._power(wav)
        mel = power @ self.mel_matrix
        db = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
        frame_lengths = self.frame_lengths(lengths)
        valid = (torch.arange(db.shape[1], device=wav.device)[None, :]
                 < frame_lengths[:, None]).unsqueeze(-1)
        peak = db.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
        db = torch.max(db, peak - self.top_db)
        if self.mean_norm:
            mean = (db * valid).sum(1, keepdim=True) / frame_lengths.view(-1, 1, 1).to(db.dtype)
            db = db - mean
        return db * valid, frame_lengths

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings; ``build_frontend(config)`` rebuilds this module."""
        return {
            "type": "speechbrain",
            "sample_rate": self.sample_rate,
            "n_mels": self.n_mels,
            "n_fft": self.n_fft,
            "win_length": self.win_length_ms,
            "hop_length": self.hop_length_ms,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "amin": self.amin,
            "top_db": self.top_db,
            "mean_norm": self.mean_norm,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SpeechBrainFrontend":
        """Inverse of :meth:`config` (the ``type`` key is ignored)."""
        return cls(**{k: v for k, v in config.items() if k != "type"})

    @property
    def feat_dim(self) -> int:
        """Feature dimension F."""
        return self.n_mels
