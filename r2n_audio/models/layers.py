"""Shared pieces: length checks and masks, reflect padding at each utterance's true end, and
SpeechBrain-compatible TDNN blocks (so SpeechBrain ECAPA state_dicts load one to one).

Length convention: ``lengths (B,)`` are valid frame counts (``None`` = every frame valid);
frames ``t >= lengths[b]`` are padding and never change the valid outputs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from r2n_audio.errors import ModelError

__all__ = [
    "check_lengths",
    "time_mask",
    "strided_lengths",
    "reflect_index",
    "gather_time",
    "Conv1dNested",
    "BatchNorm1dNested",
    "TDNNBlock",
    "SqueezeExcite2d",
    "SimAM2d",
    "bn_affine",
    "conv_bn",
    "fast_inference",
    "padded_lengths",
]


def check_lengths(lengths: torch.Tensor | None, batch: int, frames: int, min_frames: int = 1) -> torch.Tensor:
    """Return ``lengths`` as a long tensor ``(B,)`` (all ``frames`` when None), validated.

    Raises
    ------
    ModelError
        Wrong shape, a length above ``frames``, or one below ``min_frames``.
    """
    if frames < min_frames:
        raise ModelError(
            f"input has {frames} frames but this model needs at least {min_frames}; "
            "pad the features or drop shorter utterances"
        )
    if lengths is None:
        return torch.full((batch,), frames, dtype=torch.long)
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() != batch:
        raise ModelError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if lengths.is_floating_point() and not torch.jit.is_tracing():
        if bool((lengths != lengths.round()).any()):
            raise ModelError("lengths are valid frame counts (integers), not relative lengths")
    lengths = lengths.long()
    if not torch.jit.is_tracing():
        low, high = int(lengths.min()), int(lengths.max())
        if high > frames:
            raise ModelError(f"a length ({high}) exceeds the number of frames ({frames})")
        if low < min_frames:
            raise ModelError(
                f"an utterance has {low} frames but this model needs at least {min_frames}; "
                "pad the features or drop shorter utterances"
            )
    return lengths


def padded_lengths(lengths: torch.Tensor | None, frames: int) -> torch.Tensor | None:
    """``lengths (B,)``, or None when no utterance is shorter than ``frames``: a batch of equal
    lengths (or one long block) then takes the mask-free path, which computes the same without
    a full-size multiply per layer. A trace keeps them (its lengths are graph inputs)."""
    if lengths is None or torch.jit.is_tracing() or int(lengths.min()) < frames:
        return lengths
    return None


def time_mask(lengths: torch.Tensor, frames: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, T)`` mask, 1 where ``t < lengths[b]``, in ``dtype``."""
    t = torch.arange(frames, device=lengths.device)
    return (t.unsqueeze(0) < lengths.unsqueeze(1)).to(dtype)


def strided_lengths(lengths: torch.Tensor | None, stride: int) -> torch.Tensor | None:
    """Valid frames after a stride-``stride`` conv/pool with "same"-style padding (ceil);
    None (every frame valid) stays None."""
    if lengths is None or stride == 1:
        return lengths
    return torch.div(lengths - 1, stride, rounding_mode="floor") + 1


def reflect_index(lengths: torch.Tensor, frames: int, pad: int) -> torch.Tensor:
    """Gather indices ``(B, T + 2 pad)`` reflecting each utterance at its own end.

    Position ``t`` in ``[-pad, 0)`` maps to ``-t`` and ``t >= L`` to ``2 (L - 1) - t`` (PyTorch
    ``reflect`` semantics, edge not repeated), so a padded batch sees at every valid frame
    exactly what the utterance alone sees. Positions far past ``L`` (their outputs are
    padding) clamp to frame 0.
    """
    t = torch.arange(-pad, frames + pad, device=lengths.device).abs().unsqueeze(0)
    last = (lengths - 1).unsqueeze(1)
    return torch.where(t > last, 2 * last - t, t).clamp(min=0)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x (B, C, T)`` gathered along time with ``index (B, T')`` -> ``(B, C, T')``."""
    return x.gather(2, index.unsqueeze(1).expand(-1, x.size(1), -1))


class Conv1dNested(nn.Module):
    """``nn.Conv1d`` (bias, stride 1) under ``.conv`` with reflect "same" padding.

    The nesting reproduces SpeechBrain's ``Conv1d`` wrapper so its state_dict keys
    (``*.conv.weight``) map one to one. ``forward(x (B, C, T), pad_index)`` where
    ``pad_index[pad]`` comes from :func:`reflect_index`; kernel 1 needs none.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.pad = dilation * (kernel_size - 1) // 2

    def forward(self, x: torch.Tensor, pad_index: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        if self.pad:
            if pad_index is None:
                x = F.pad(x, (self.pad, self.pad), mode="reflect")
            else:
                x = gather_time(x, pad_index[self.pad])
        return self.conv(x)


class BatchNorm1dNested(nn.Module):
    """``nn.BatchNorm1d`` under ``.norm`` (SpeechBrain's wrapper layout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class TDNNBlock(nn.Module):
    """SpeechBrain's TDNN block: conv (reflect "same" padding) -> ReLU -> BatchNorm.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, dilation : int

    Shapes: ``(B, in_channels, T) -> (B, out_channels, T)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = Conv1dNested(in_channels, out_channels, kernel_size, dilation)
        self.norm = BatchNorm1dNested(out_channels)

    @property
    def pad(self) -> int:
        return self.conv.pad

    def forward(self, x: torch.Tensor, pad_index: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        x = torch.relu_(self.conv(x, pad_index))  # conv backward needs no output
        bn = self.norm.norm
        if fast_inference() and not bn.training and bn.track_running_stats:
            # eval BatchNorm as an in-place affine: no new (B, C, T) tensor (its page faults
            # cost as much as the pass)
            scale, shift = bn_affine(bn)
            return x.mul_(scale.unsqueeze(1)).add_(shift.unsqueeze(1))
        return self.norm(x)


class SqueezeExcite2d(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018) in timm's ``SEModule`` layout.

    ``fc1`` 1x1 conv ``C -> C/16`` (bias), ReLU, ``fc2`` ``C/16 -> C``, sigmoid gate. The squeeze
    is a mean over frequency and the *valid* frames only, so padding does not leak in.
    Shapes: ``x (B, C, F, T)``, ``mask (B, 1, 1, T)`` or None -> ``(B, C, F, T)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        # timm's make_divisible(C / reduction, 8): the hidden width its SE weights have
        hidden = max(8, int(channels / reduction + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            s = x.mean((2, 3), keepdim=True)
        else:
            s = (x * mask).sum((2, 3), keepdim=True) / (mask.sum(3, keepdim=True) * x.size(2))
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class SimAM2d(nn.Module):
    """SimAM, parameter-free attention (Yang, Zhang, Li and Xie, ICML 2021), WeSpeaker's form.

    Each position's energy ``e = (x - mu)^2 / (4 (var + lambda)) + 1/2`` against the mean and
    variance (``n - 1`` denominator) of its channel's map; output ``x * sigmoid(e)``. With a
    mask the statistics cover frequency and the *valid* frames only.
    Shapes: ``x (B, C, F, T)``, ``mask (B, 1, 1, T)`` or None -> ``(B, C, F, T)``.
    """

    def __init__(self, lambda_p: float = 1e-4) -> None:
        super().__init__()
        self.lambda_p = lambda_p

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            n = x.size(2) * x.size(3)
            d = (x - x.mean((2, 3), keepdim=True)).square_()
            v = d.sum((2, 3), keepdim=True) / (n - 1)
        else:
            n = mask.sum(3, keepdim=True) * x.size(2)
            d = (x - (x * mask).sum((2, 3), keepdim=True) / n).square_()
            v = (d * mask).sum((2, 3), keepdim=True) / (n - 1).clamp(min=1)
        scale = 0.25 / (v + self.lambda_p)
        if fast_inference():  # one full-size allocation instead of five
            return d.mul_(scale).add_(0.5).sigmoid_().mul_(x)
        return x * torch.sigmoid(d * scale + 0.5)


def fast_inference() -> bool:
    """Whether inference-only fast paths may run: no autograd (in-place reuse of buffers;
    oneDNN's channels-last convolution backward corrupts memory for some small-channel maps)
    and no tracing (a trace must record one graph whatever the grad mode)."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing()


def bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as ``x * scale + shift``: per-channel ``(C,)`` tensors."""
    scale = (bn.running_var + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def conv_bn(x: torch.Tensor, conv: nn.Module, bn: nn.Module) -> torch.Tensor:
    """``bn(conv(x))`` for a ``Conv1d``/``Conv2d`` and a ``BatchNorm``; in eval mode the
    BatchNorm is folded into the convolution's weight and bias (same result to rounding, one
    pass and one allocation instead of two, which matters for maps past malloc's mmap
    threshold). Training mode runs the two modules (batch statistics)."""
    if bn.training or not bn.track_running_stats:
        return bn(conv(x))
    scale, shift = bn_affine(bn)
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale.view(-1, *[1] * (conv.weight.dim() - 1))
    return conv._conv_forward(x, weight, shift)
