"""Batched, padding-safe Kaldi filterbank features and per-utterance mean normalisation.

:class:`Fbank` computes what ``torchaudio.compliance.kaldi.fbank`` (and Kaldi's
``compute-fbank-feats``) computes for each utterance, for a whole padded batch at once: frames
cut with one ``unfold``, one ``rfft``, one mel product, on CPU (in cache-sized blocks with reused
buffers) or GPU (one pass). Every per-frame step (dither, DC removal, energy floor,
pre-emphasis, window) sees only its own utterance's samples, so padding never changes a valid
frame. Under ONNX export or TorchScript tracing a traceable path (framing by index, a float64
DFT product) runs instead, so the front-end can sit inside an exported graph.

Waveform scale
--------------
Inputs are float waveforms in [-1, 1] (what :func:`r2n_audio.audio.load_audio` returns). Kaldi and
WeSpeaker work on the int16 range instead: WeSpeaker multiplies by ``2**15`` before calling
torchaudio's Kaldi fbank. ``waveform_scale`` multiplies the input first (``1.0``: torchaudio on
the raw floats; ``32768.0``: WeSpeaker / Kaldi on int16 samples). With log power features the
scale only adds the constant ``2 * ln(scale)`` to every bin (until the floors bite), which CMN
removes; ``dither`` and ``energy_floor`` are in units of the *scaled* samples, as in Kaldi.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor, nn

from r2n_audio.errors import R2NError
from r2n_audio.features.silence import frame_rms
from r2n_audio.features.spectral import (EPS, WINDOW_TYPES, kaldi_mel_banks, kaldi_window,
                                         mel_bands, real_dft)

__all__ = ["Fbank", "CMN", "kaldi_mel_banks", "WINDOW_TYPES"]


class Fbank(nn.Module):
    """Kaldi log mel filterbank for padded batches, equal to ``torchaudio.compliance.kaldi.fbank``.

    Option names and defaults are torchaudio's (so ``Fbank()`` gives 23 bins, a povey window and
    ``snip_edges=True``); VTLN, ``channel``, ``min_duration`` and ``subtract_mean`` are left out
    (use :class:`CMN` for mean normalisation).

    Parameters
    ----------
    num_mel_bins, frame_length, frame_shift, dither, window_type, preemphasis_coefficient,
    remove_dc_offset, snip_edges, energy_floor, low_freq, high_freq, use_energy, use_log_fbank,
    use_power, sample_frequency, round_to_power_of_two, raw_energy, htk_compat, blackman_coeff
        As in torchaudio (times in ms, frequencies in Hz). ``dither`` is Gaussian noise of that
        standard deviation added to every frame, **only in training mode** (like dropout), so a
        front-end configured for training is deterministic after ``.eval()``.
    waveform_scale : float
        Input multiplier applied first (see the module docstring): ``1.0`` for torchaudio on
        [-1, 1] floats, ``32768.0`` for WeSpeaker / Kaldi int16 conventions.

    Frame counts follow Kaldi: with ``snip_edges=True`` an utterance of ``n`` samples has
    ``1 + (n - window) // shift`` frames and **0 frames when it is shorter than one window**
    (torchaudio raises there instead); with ``snip_edges=False`` it has
    ``(n + shift // 2) // shift`` frames, the signal being reflected at the edges of each
    utterance's own length (repeatedly for very short inputs, as Kaldi does).

    Examples
    --------
    >>> fbank = Fbank(num_mel_bins=80, window_type="hamming")
    >>> feats, frames = fbank(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    >>> tuple(feats.shape), frames.tolist()
    ((2, 98, 80), [98, 48])
    """

    #: CPU work is done in blocks of about this many frames (buffers stay in the L2 cache).
    cpu_block_frames = 600

    def __init__(self, num_mel_bins: int = 23, frame_length: float = 25.0,
                 frame_shift: float = 10.0, dither: float = 0.0, window_type: str = "povey",
                 preemphasis_coefficient: float = 0.97, remove_dc_offset: bool = True,
                 snip_edges: bool = True, energy_floor: float = 1.0, low_freq: float = 20.0,
                 high_freq: float = 0.0, use_energy: bool = False, use_log_fbank: bool = True,
                 use_power: bool = True, sample_frequency: float = 16000.0,
                 round_to_power_of_two: bool = True, raw_energy: bool = True,
                 htk_compat: bool = False, blackman_coeff: float = 0.42,
                 waveform_scale: float = 1.0) -> None:
        given = dict(locals())
        super().__init__()
        # torchaudio's exact expressions, so odd rates round the same way.
        self.window_size = int(sample_frequency * frame_length * 0.001)
        self.window_shift = int(sample_frequency * frame_shift * 0.001)
        self.padded_window_size = (1 << (self.window_size - 1).bit_length()
                                   if round_to_power_of_two else self.window_size)
        self._check(window_type, preemphasis_coefficient, sample_frequency)
        # JSON types for config(): each option cast to the type of its default.
        self.options = {name: type(param.default)(given[name]) for name, param
                        in inspect.signature(Fbank.__init__).parameters.items() if name != "self"}
        for name, value in self.options.items():
            setattr(self, name, value)
        self.num_features = self.num_mel_bins + int(self.use_energy)
        # float64 buffers, cast to the input dtype per call (a few kB), so float64 inputs keep
        # full precision; persistent=False keeps them out of state_dicts (they are derived).
        self.register_buffer("window", kaldi_window(window_type, self.window_size, blackman_coeff),
                             persistent=False)
        banks = kaldi_mel_banks(self.num_mel_bins, self.padded_window_size, sample_frequency,
                                low_freq, high_freq)
        mel = banks.T.double()
        self.register_buffer("mel_matrix", mel.repeat_interleave(2, 0) if use_power else mel,
                             persistent=False)
        self._bands = mel_bands(self.mel_matrix)

    def _check(self, window_type: str, preemph: float, sample_frequency: float) -> None:
        if window_type not in WINDOW_TYPES:
            raise R2NError(f"unknown window_type {window_type!r}; choose one of {WINDOW_TYPES}")
        if sample_frequency <= 0:
            raise R2NError(f"sample_frequency must be positive, got {sample_frequency}")
        if self.window_size < 2 or self.window_shift < 1:
            raise R2NError(f"frame_length / frame_shift give a window of {self.window_size} and a "
                           f"shift of {self.window_shift} samples; need at least 2 and 1")
        if self.padded_window_size % 2:
            raise R2NError(f"the FFT size {self.padded_window_size} must be even: set "
                           f"round_to_power_of_two=True or change frame_length")
        if not 0.0 <= preemph <= 1.0:
            raise R2NError(f"preemphasis_coefficient must be in [0, 1], got {preemph}")

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())

    def num_frames(self, lengths: Tensor) -> Tensor:
        """Kaldi frame counts (B,) for ``lengths`` (B,) in samples."""
        lengths = lengths.long()
        if self.snip_edges:
            frames = 1 + torch.div(lengths - self.window_size, self.window_shift,
                                   rounding_mode="floor")
            return torch.where(lengths < self.window_size, torch.zeros_like(frames), frames)
        return torch.div(lengths + self.window_shift // 2, self.window_shift,
                         rounding_mode="floor")

    def frame_rms(self, waveforms: Tensor, lengths: Tensor, num_frames: int) -> Tensor:
        """RMS (B, T) of each frame's input samples after removing the frame's mean.

        In input units (before ``waveform_scale``), for
        :mod:`~r2n_audio.features.silence`; frames past an utterance's count are garbage.
        """
        if num_frames == 0:
            return waveforms.new_zeros(waveforms.shape[0], 0)
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # no unfold in graphs
            index = (torch.arange(num_frames, device=waveforms.device).unsqueeze(1)
                     * self.window_shift + torch.arange(self.window_size, device=waveforms.device))
            if self.snip_edges:
                return frame_rms(waveforms[:, index])
            n = lengths.clamp(min=1).view(-1, 1, 1)
            index = torch.remainder(index + (self.window_shift // 2 - self.window_size // 2), 2 * n)
            index = torch.where(index >= n, 2 * n - 1 - index, index)
            return frame_rms(torch.gather(waveforms, 1, index.flatten(1)).view(index.shape))
        return frame_rms(self._frames(waveforms, lengths, num_frames))

    def _frames(self, x: Tensor, lengths: Tensor, num_frames: int) -> Tensor:
        """Cut (B, T, window) frames; with snip_edges=False reflect inside each utterance."""
        span = (num_frames - 1) * self.window_shift + self.window_size
        if self.snip_edges:
            return x[:, :span].unfold(1, self.window_size, self.window_shift)
        # Kaldi's first frame starts at shift/2 - window/2; out-of-range indices are reflected
        # (-1 -> 0, n -> n-1, repeatedly), which is periodic with period 2n.
        offset = self.window_shift // 2 - self.window_size // 2
        n = lengths.clamp(min=1).unsqueeze(1)
        idx = torch.remainder(torch.arange(span, device=x.device).unsqueeze(0) + offset, 2 * n)
        idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
        return x.gather(1, idx).unfold(1, self.window_size, self.window_shift)

    def _log_energy(self, frames: Tensor) -> Tensor:
        energy = (frames * frames).sum(-1).clamp(min=EPS).log()
        if self.energy_floor > 0.0:
            energy = energy.clamp(min=math.log(self.energy_floor))
        return energy

    def _workspace(self, frames: int, like: Tensor) -> dict[str, Tensor]:
        """Buffers for ``frames`` frames, reused by every block of a call: fresh large tensors
        per step cost page faults that outweigh the arithmetic on CPU."""
        return {"frame": like.new_empty(frames * self.window_size),
                "padded": like.new_zeros(frames * self.padded_window_size),  # tails stay 0
                "mel": like.new_empty(frames * self.num_mel_bins),
                "power": like.new_empty(frames * (self.padded_window_size // 2 + 1))}

    def _features(self, frames: Tensor, dest: Tensor, work: dict[str, Tensor],
                  consts: tuple[Tensor, list, torch.Generator | None]) -> None:
        """Write the features of ``frames`` (..., window) into ``dest`` (..., F).

        Kaldi's per-frame steps (scale, dither, DC removal, raw energy, pre-emphasis, window),
        one rfft, the mel product (band by band: each filter spans a few bins, so this skips
        ~85% of the matrix's zeros); every large intermediate lives in ``work``.
        """
        window, mel_bands, generator = consts
        shape, size, coef = frames.shape[:-1], self.window_size, self.preemphasis_coefficient
        count = shape.numel()
        x = work["frame"][:count * size].view(*shape, size)
        dither = self.dither != 0.0 and self.training
        if self.remove_dc_offset and self.waveform_scale == 1.0 and not dither:
            torch.sub(frames, frames.mean(-1, keepdim=True), out=x)  # one pass for the usual case
        else:
            torch.mul(frames, self.waveform_scale, out=x)
            if dither:
                x.add_(torch.randn(x.shape, generator=generator, device=x.device,
                                   dtype=x.dtype), alpha=self.dither)
            if self.remove_dc_offset:
                x.sub_(x.mean(-1, keepdim=True))
        energy = self._log_energy(x) if self.use_energy and self.raw_energy else None
        buf = work["padded"][:count * self.padded_window_size].view(*shape, -1)
        if coef != 0.0:  # Kaldi: x[j] -= c * x[j - 1] for j > 0, x[0] -= c * x[0]
            torch.sub(x[..., 1:], x[..., :-1], alpha=coef, out=buf[..., 1:size])
            torch.mul(x[..., 0], 1.0 - coef, out=buf[..., 0])
        else:
            buf[..., :size] = x
        buf[..., :size].mul_(window)
        if self.use_energy and not self.raw_energy:
            energy = self._log_energy(buf)
        # A fresh rfft output (glibc reuses the block-sized allocation) beats out=, which
        # computes into a temporary and copies.
        spec = torch.fft.rfft(buf)
        parts = torch.view_as_real(spec).square_()
        if self.use_power:  # (re^2, im^2) pairs meet duplicated mel rows: no strided sum
            power = parts.view(count, -1)
        else:
            power = torch.add(parts[..., 0], parts[..., 1],
                              out=work["power"][:spec.numel()].view(spec.shape))
            power = power.sqrt_().view(count, -1)
        mel = work["mel"][:count * self.num_mel_bins].view(count, -1)
        for rows, cols, weights in mel_bands:
            torch.mm(power[:, rows], weights, out=mel[:, cols])
        if self.use_log_fbank:
            mel.clamp_(min=EPS).log_()
        mel = mel.view(*shape, -1)
        if energy is None:
            dest.copy_(mel)
        else:
            dest[..., :-1 if self.htk_compat else None][..., int(not self.htk_compat):] = mel
            dest[..., -1 if self.htk_compat else 0] = energy

    def _blocks(self, frame_lengths: list[int]) -> list[tuple[slice, slice]]:
        """(utterances, frames) blocks of at most ``cpu_block_frames`` frames covering every
        valid frame; frames past an utterance's count are only computed inside a group."""
        size, blocks, first = self.cpu_block_frames, [], 0
        while first < len(frame_lengths):
            stop, longest = first + 1, frame_lengths[first]
            while (stop < len(frame_lengths)
                   and (stop + 1 - first) * max(longest, frame_lengths[stop]) <= size):
                longest = max(longest, frame_lengths[stop])
                stop += 1
            blocks += [(slice(first, stop), slice(t, t + size)) for t in range(0, longest, size)]
            first = stop
        return blocks

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Compute features for a padded batch.

        Parameters
        ----------
        waveforms : Tensor (B, N)
            Float waveforms (see ``waveform_scale``); padding after each length is ignored.
        lengths : Tensor (B,), optional
            Valid samples per utterance; ``None`` means all ``N``.
        generator : torch.Generator, optional
            Source of the dither noise (on the waveforms' device), for reproducible training.

        Returns
        -------
        feats : Tensor (B, T, F)
            ``F = num_mel_bins (+1 with use_energy)``; frames past an utterance's count are 0.
        frame_lengths : Tensor (B,) int64
            Valid frames per utterance.
        """
        if waveforms.dim() != 2:
            raise R2NError(f"Fbank expects waveforms (B, N), got shape {tuple(waveforms.shape)}")
        batch, total = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long, device=waveforms.device)
        lengths = lengths.to(device=waveforms.device, dtype=torch.long).clamp(max=total)
        frame_lengths = self.num_frames(lengths)
        # Half precision loses the log-mel dynamic range and autocast would run the mel product
        # in bf16: features are always computed in float32 or float64.
        x = waveforms.to(waveforms.dtype if waveforms.dtype == torch.float64 else torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
                return self._graph(x, lengths, frame_lengths), frame_lengths
            return self._batched(x, lengths, frame_lengths, generator), frame_lengths

    def _batched(self, x: Tensor, lengths: Tensor, frame_lengths: Tensor,
                 generator: torch.Generator | None) -> Tensor:
        """The eager path: whole batch on GPU, cache-sized blocks on CPU (~3x faster there)."""
        batch, num_frames = x.shape[0], int(frame_lengths.max()) if x.shape[0] else 0
        feats = x.new_empty((batch, num_frames, self.num_features))  # masked at the end
        if num_frames == 0:
            return feats
        frames = self._frames(x, lengths, num_frames)
        mel = self.mel_matrix.to(x.dtype)
        consts = (self.window.to(x.dtype),
                  [(rows, cols, mel[rows, cols].contiguous()) for rows, cols in self._bands],
                  generator)
        if x.device.type != "cpu":
            blocks = [(slice(None), slice(None))]
        else:
            blocks = self._blocks(frame_lengths.tolist())
        work = self._workspace(max(frames[b].shape[:2].numel() for b in blocks), x)
        for block in blocks:
            self._features(frames[block], feats[block], work, consts)
        if bool((frame_lengths < num_frames).any()):  # fixed-length crops have no padding
            invalid = torch.arange(num_frames, device=x.device) >= frame_lengths.unsqueeze(1)
            feats.masked_fill_(invalid.unsqueeze(-1), 0.0)
        return feats

    def _graph(self, x: Tensor, lengths: Tensor, frame_lengths: Tensor) -> Tensor:
        """The export path (ONNX, TorchScript tracing): shapes follow the data, frames are cut
        by index and the DFT is a float64 product (ONNX runtimes do not all have rfft)."""
        size, shift, coef = self.window_size, self.window_shift, self.preemphasis_coefficient
        index = (torch.arange(frame_lengths.max(), device=x.device).unsqueeze(1) * shift
                 + torch.arange(size, device=x.device))  # (T, window)
        if self.snip_edges:
            frames = x[:, index]
        else:
            n = lengths.clamp(min=1).view(-1, 1, 1)
            index = torch.remainder(index + (shift // 2 - size // 2), 2 * n)
            index = torch.where(index >= n, 2 * n - 1 - index, index)
            frames = torch.gather(x, 1, index.flatten(1)).view(index.shape)
        frames = frames * self.waveform_scale
        if self.remove_dc_offset:
            frames = frames - frames.mean(-1, keepdim=True)
        energy = self._log_energy(frames) if self.use_energy and self.raw_energy else None
        if coef != 0.0:
            frames = frames - coef * torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames * self.window.to(x.dtype)
        if self.use_energy and not self.raw_energy:
            energy = self._log_energy(frames)
        re, im = (frames.double() @ real_dft(size, self.padded_window_size, x.device)).chunk(2, -1)
        power = (re * re + im * im).to(x.dtype)
        power = power if self.use_power else power.sqrt()
        feats = power @ self.mel_matrix[::2 if self.use_power else 1].to(x.dtype)
        if self.use_log_fbank:
            feats = feats.clamp(min=EPS).log()
        if energy is not None:
            parts = (feats, energy.unsqueeze(-1))
            feats = torch.cat(parts if self.htk_compat else parts[::-1], dim=-1)
        valid = torch.arange(feats.shape[1], device=x.device) < frame_lengths.unsqueeze(1)
        return feats * valid.unsqueeze(-1).to(feats.dtype)


class CMN(nn.Module):
    """Per-utterance cepstral mean (and optionally variance) normalisation over valid frames.

    Parameters
    ----------
    norm_means : bool
        Subtract each utterance's mean over its valid frames (Kaldi ``apply-cmvn-sliding`` over
        the whole utterance; WeSpeaker's and SpeechBrain's ``sentence`` normalisation).
    norm_vars : bool
        Also divide by the standard deviation (population, floored at ``eps``).
    eps : float
        Floor on the standard deviation.

    Padded frames stay 0; an utterance with 0 valid frames is left at 0.
    """

    def __init__(self, norm_means: bool = True, norm_vars: bool = False,
                 eps: float = 1e-10) -> None:
        super().__init__()
        self.norm_means, self.norm_vars, self.eps = bool(norm_means), bool(norm_vars), float(eps)

    def extra_repr(self) -> str:
        return f"norm_means={self.norm_means}, norm_vars={self.norm_vars}"

    def forward(self, feats: Tensor, frame_lengths: Tensor | None = None) -> Tensor:
        """Normalise ``feats`` (B, T, F) over the first ``frame_lengths`` (B,) frames."""
        batch, frames, _ = feats.shape
        if frame_lengths is None:
            frame_lengths = torch.full((batch,), frames, device=feats.device)
        valid = (torch.arange(frames, device=feats.device)
                 < frame_lengths.to(feats.device).unsqueeze(1)).unsqueeze(-1)
        count = valid.sum(1, keepdim=True).clamp(min=1).to(feats.dtype)
        feats = feats.masked_fill(~valid, 0.0)
        mean = feats.sum(1, keepdim=True) / count
        if self.norm_means:
            feats = (feats - mean).masked_fill(~valid, 0.0)
        if self.norm_vars:
            centred = feats if self.norm_means else (feats - mean).masked_fill(~valid, 0.0)
            std = (centred.pow(2).sum(1, keepdim=True) / count).sqrt().clamp(min=self.eps)
            feats = feats / std
        return feats
