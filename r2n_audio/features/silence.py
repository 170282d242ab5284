"""Digital silence: frames with no signal, found and dropped before they can weigh on an embedding.

A frame is *silent* when the RMS of its samples, after removing the frame's own mean (so a DC
offset counts as silence), is below :data:`SILENCE_RMS`: two 16-bit steps, about -84 dBFS.
That covers exact zeros, constant DC and +-1-step dither, and lies far under the noise floor of
any real recording (the quietest 25 ms of pyannote.audio's sample recording has an RMS of 6.9
steps). Frames are Kaldi's: 25 ms every 10 ms, ``snip_edges`` framing.

Why drop them: inference runs with dither 0, so an exactly-zero frame has log mel energies at
the float floor (about -16) while +-1-step noise gives energies near 0 to 8; with enough such
frames, per-utterance mean normalisation and pooling are dominated by *how* the silence was
encoded, and the same speech padded with zeros or with one-step noise embeds far apart.
Dropping the silent frames makes both the speech alone. Real-speech frames never change.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SILENCE_RMS", "frame_rms", "has_signal", "drop_frames"]

SILENCE_RMS = 2.0 / 32768.0
"""Frames whose RMS after mean removal is below this (in [-1, 1] units) are silent."""


def frame_rms(frames: Tensor) -> Tensor:
    """RMS of each frame ``(..., W)`` after removing its mean: ``(...)``, float32 or float64."""
    centred = frames - frames.mean(-1, keepdim=True)
    return centred.square().mean(-1).sqrt()


def has_signal(wave: Tensor, threshold: float = SILENCE_RMS, window: int = 400,
               shift: int = 160, block_frames: int = 4096) -> bool:
    """Whether any frame of ``wave`` (N,) is louder than ``threshold`` (see the module doc).

    A file shorter than one frame is judged as one frame. Works in blocks of ``block_frames``
    frames, so an hour of audio never makes an hour of overlapping frames.
    """
    if wave.numel() < window:
        return bool(wave.numel()) and bool(frame_rms(wave.double()) >= threshold)
    count = 1 + (wave.numel() - window) // shift
    span = block_frames * shift
    for first in range(0, count, block_frames):
        start = first * shift
        frames = wave[start:start + span + window - shift].unfold(0, window, shift)
        if bool((frame_rms(frames.double()) >= threshold).any()):
            return True
    return False


def drop_frames(feats: Tensor, frame_lengths: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Move each utterance's kept frames to the front, in order, and zero the rest.

    Parameters
    ----------
    feats : Tensor (B, T, F)
    frame_lengths : Tensor (B,)
        Valid frames per utterance; frames past it are never kept.
    keep : Tensor (B, T) bool

    Returns
    -------
    feats : Tensor (B, T, F)
        Same shape; frames past the new lengths are 0.
    frame_lengths : Tensor (B,) int64
        Kept frames per utterance (may be 0).

    A scatter, not a sort, so it traces into ONNX graphs.
    """
    batch, frames, dim = feats.shape
    valid = torch.arange(frames, device=feats.device).unsqueeze(0) < frame_lengths.unsqueeze(1)
    keep = keep & valid
    # Kept frame t goes to position (kept frames before it); dropped frames to a spare slot T.
    position = torch.cumsum(keep.long(), dim=1) - 1
    position = torch.where(keep, position, torch.full_like(position, frames))
    out = feats.new_zeros(batch, frames + 1, dim)
    out.scatter_(1, position.unsqueeze(-1).expand(-1, -1, dim), feats)
    return out[:, :frames], keep.sum(1)
