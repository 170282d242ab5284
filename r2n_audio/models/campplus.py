"""CAM++: a densely connected TDNN with context-aware masking behind a 2-D front-end.

Wang, Zheng, Chen, Cheng and Chen, "CAM++: A Fast and Efficient Network for Speaker
Verification Using Context-Aware Masking", Interspeech 2023 (arXiv:2303.00332).

Factories and the upstream class each reproduces (feat_dim 80; the state_dict keys are
upstream's, so checkpoints load with ``strict=True`` and no key mapping):

- ``campplus``: 3D-Speaker ``speakerlab.models.campplus.DTDNN.CAMPPlus(feat_dim=80,
  embedding_size=192)``, 6,848,544 parameters (ModelScope's ``campplus_cn_common.bin``,
  ``campplus_voxceleb.bin``). ``create_model("campplus", embed_dim=512)`` is the same class at
  ``embedding_size=512``.
- ``campplus_e512``: WeSpeaker ``wespeaker.models.campplus.CAMPPlus(feat_dim=80, embed_dim=512,
  pooling_func="TSTP")``, 7,176,224 parameters. The two toolkits' networks are the same but for
  the standard deviation of the statistics pooling: 3D-Speaker ``sqrt(var)``, WeSpeaker
  ``sqrt(var + 1e-7)`` (``stats_eps``); both unbiased.
- ``campplus_tiny``: a small layout for tests.

Layout: FCM head (2-D ResNet blocks striding frequency only, ``m_channels * feat_dim / 8``
channels out) -> TDNN (k5, stride 2) -> three CAM-dense blocks (12, 24, 16 layers, growth 32,
dilations 1, 2, 2), each followed by a transit layer halving the channels -> BN-ReLU ->
statistics pooling -> 1x1 conv -> BatchNorm without affine terms.

Context-aware masking gates each dense layer's output by a sigmoid of the utterance mean plus
the mean of its 100-frame segment. Padding: lengths are tracked through the stride-2 TDNN, the
global and segment means count valid frames only (a segment cut by the utterance's end averages
what it has, as upstream's ``ceil_mode`` pooling does for an utterance alone), and padded frames
are zeroed before every convolution wider than one frame, so **a padded batch equals each
utterance alone** (eval mode). With nothing padded no mask is built.

Speed (eval, same weights as upstream): the gate is computed once per segment, not per frame
(it is constant within a segment); without autograd the FCM head runs channels-last (oneDNN's
fast layout for its 32-channel 3x3 convolutions) with each BatchNorm folded into its conv, and
the dense blocks write into one preallocated buffer instead of concatenating a growing tensor
per layer.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from r2n_audio.models.layers import (check_lengths, conv_bn, fast_inference, padded_lengths,
                                      strided_lengths, time_mask)
from r2n_audio.models.pooling import StatisticsPooling
from r2n_audio.models.registry import build, register_model

__all__ = ["CAMPPlus", "FCM", "CAMLayer", "CAMDenseTDNNBlock"]


def _mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded frames of ``x`` (``mask`` broadcasts over its time axis) or pass it."""
    return x if mask is None else x * mask


class _Nonlinear(nn.Module):
    """BatchNorm1d, then ReLU unless ``relu=False``: upstream's ``get_nonlinear`` Sequential
    (keys ``batchnorm.*``). Shapes: ``(B, C, T) -> (B, C, T)`` or ``(B, C) -> (B, C)``."""

    def __init__(self, channels: int, relu: bool = True, affine: bool = True) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(x)
        return torch.relu_(x) if self.relu else x  # BN backward needs its input, not output


class BasicResBlock(nn.Module):
    """FCM's residual block: 3x3 (stride ``(s, 1)``: frequency only) -> BN -> ReLU -> 3x3 ->
    BN, + shortcut, ReLU. Shapes: ``x (B, C, F, T)``, ``mask (B, 1, 1, T)`` or None."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, (stride, 1), 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, (stride, 1), bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # in-place ReLU and add: no producer here keeps its output for backward
        out = _mask(torch.relu_(conv_bn(x, self.conv1, self.bn1)), mask)
        out = conv_bn(out, self.conv2, self.bn2)
        out += x if len(self.shortcut) == 0 else conv_bn(x, self.shortcut[0], self.shortcut[1])
        return _mask(torch.relu_(out), mask)


class FCM(nn.Module):
    """Front-end convolution module: 3x3 conv, two stages of :class:`BasicResBlock` (stride 2
    on frequency), a 3x3 conv striding frequency by 2; time keeps its resolution.

    Shapes: ``forward(x (B, F, T), mask (B, 1, 1, T) | None) -> (B, m_channels * F', T)``
    with ``F' = ceil(F / 8)`` (``out_channels`` uses upstream's ``m_channels * (F // 8)``).
    """

    def __init__(self, m_channels: int = 32, num_blocks: Sequence[int] = (2, 2), feat_dim: int = 80) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(*(BasicResBlock(m_channels, m_channels, 2 if i == 0 else 1)
                                      for i in range(num_blocks[0])))
        self.layer2 = nn.Sequential(*(BasicResBlock(m_channels, m_channels, 2 if i == 0 else 1)
                                      for i in range(num_blocks[1])))
        self.conv2 = nn.Conv2d(m_channels, m_channels, 3, (2, 1), 1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x.unsqueeze(1)
        if fast_inference():  # oneDNN's fast layout for these small-channel convolutions
            x = x.contiguous(memory_format=torch.channels_last)
        out = _mask(torch.relu_(conv_bn(x, self.conv1, self.bn1)), mask)
        for block in (*self.layer1, *self.layer2):
            out = block(out, mask)
        out = _mask(torch.relu_(conv_bn(out, self.conv2, self.bn2)), mask)
        return out.flatten(1, 2)


class TDNNLayer(nn.Module):
    """Conv1d (no bias, "same" zero padding, ``stride``) -> BN -> ReLU; keys ``linear.*``,
    ``nonlinear.batchnorm.*``. Shapes: ``(B, C_in, T) -> (B, C_out, ceil(T / stride))``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, bias=False)
        self.nonlinear = _Nonlinear(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by the utterance and segment context.

    ``y = linear_local(x)``; context ``c = mean_t(x) + segment_mean(x)`` (segments of
    ``seg_len`` frames from the start, valid frames only); gate ``sigmoid(linear2(relu(
    linear1(c))))``, constant within a segment, so it is computed once per segment.

    Shapes: ``x (B, C, T)`` (padded frames zeroed), ``lengths (B,)`` or None ->
    ``(B, out_channels, T)``.
    """

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 reduction: int = 2, seg_len: int = 100) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size, padding=pad, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.seg_len = seg_len

    def _context(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Utterance mean plus each segment's mean, ``(B, C, n_segments)``."""
        seg = F.avg_pool1d(x, self.seg_len, self.seg_len, ceil_mode=True)
        if lengths is None:
            return x.mean(2, keepdim=True) + seg
        # avg_pool divides by the frames inside the tensor; rescale to the valid ones
        start = torch.arange(seg.size(2), device=x.device) * self.seg_len
        inside = (x.size(2) - start).clamp(max=self.seg_len).to(x.dtype)
        valid = (lengths.unsqueeze(1) - start).clamp(1, self.seg_len).to(x.dtype)
        total = x.sum(2, keepdim=True) / lengths.to(x.dtype).view(-1, 1, 1)
        return total + seg * (inside / valid).unsqueeze(1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        y = self.linear_local(x)
        # a handful of segments: plain matmuls, not oneDNN convolutions with their set-up cost
        ctx = self._context(x, lengths).transpose(1, 2)
        hidden = F.relu(F.linear(ctx, self.linear1.weight.squeeze(2), self.linear1.bias))
        gate = torch.sigmoid(F.linear(hidden, self.linear2.weight.squeeze(2), self.linear2.bias))
        b, n, c = gate.shape
        gate = gate.transpose(1, 2).unsqueeze(3).expand(b, c, n, self.seg_len).reshape(b, c, n * self.seg_len)
        return y * gate[:, :, : y.size(2)]


class CAMDenseTDNNLayer(nn.Module):
    """BN-ReLU -> 1x1 bottleneck (``bn_channels``) -> BN-ReLU -> :class:`CAMLayer`.

    Shapes: ``x (B, C_in, T)``, ``mask (B, 1, T) | None``, ``lengths`` -> ``(B, growth, T)``.
    """

    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int,
                 dilation: int, seg_len: int) -> None:
        super().__init__()
        self.nonlinear1 = _Nonlinear(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _Nonlinear(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation, seg_len=seg_len)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor:
        h = _mask(self.nonlinear2(self.linear1(self.nonlinear1(x))), mask)
        return self.cam_layer(h, lengths)


class CAMDenseTDNNBlock(nn.ModuleList):
    """Densely connected CAM layers: layer ``i`` sees the input and every earlier output.

    Shapes: ``(B, C, T) -> (B, C + num_layers * growth, T)``.
    """

    def __init__(self, num_layers: int, in_channels: int, growth: int, bn_channels: int,
                 kernel_size: int, dilation: int, seg_len: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(
                in_channels + i * growth, growth, bn_channels, kernel_size, dilation, seg_len))
        self.in_channels, self.growth = in_channels, growth

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor:
        if not fast_inference():  # autograd needs every layer's input kept intact
            for layer in self:
                x = torch.cat([x, layer(x, mask, lengths)], dim=1)
            return x
        # inference: one buffer, each layer reads a prefix and writes its own slice
        out = x.new_empty(x.size(0), self.in_channels + len(self) * self.growth, x.size(2))
        out[:, : self.in_channels] = x
        c = self.in_channels
        for layer in self:
            out[:, c : c + self.growth] = layer(out[:, :c], mask, lengths)
            c += self.growth
        return out


class TransitLayer(nn.Module):
    """BN-ReLU -> 1x1 conv (no bias). Shapes: ``(B, C_in, T) -> (B, C_out, T)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = _Nonlinear(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    """Embedding layer: 1x1 conv (no bias) -> BatchNorm without affine terms.
    Shapes: ``(B, C_in) -> (B, C_out)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = _Nonlinear(out_channels, relu=False, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(2)).squeeze(2))


class CAMPPlus(nn.Module):
    """CAM++ speaker embedding network (3D-Speaker / WeSpeaker layout; see the module doc).

    Parameters
    ----------
    feat_dim : int
        Input feature size ``F``.
    embed_dim : int
        Embedding size (3D-Speaker's ``embedding_size``).
    growth_rate, bn_size, init_channels : int
        Dense-block growth, bottleneck factor (``bn_size * growth_rate`` channels) and TDNN width.
    m_channels : int
        FCM head width.
    fcm_blocks, block_layers, block_dilations : sequence of int
        Residual blocks per FCM stage; layers and dilation of each CAM-dense block.
    seg_len : int
        Segment length (frames after the TDNN) of the context-aware masking.
    stats_eps : float
        Added to the variance before the square root in the pooling (WeSpeaker 1e-7, 3D-Speaker 0).

    Shapes: ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``;
    ``forward_frames(...) -> (B, C, ceil(T / 2))`` (the map before pooling).
    """

    def __init__(
        self, feat_dim: int = 80, embed_dim: int = 192, growth_rate: int = 32, bn_size: int = 4,
        init_channels: int = 128, m_channels: int = 32, fcm_blocks: Sequence[int] = (2, 2),
        block_layers: Sequence[int] = (12, 24, 16), block_dilations: Sequence[int] = (1, 2, 2),
        seg_len: int = 100, stats_eps: float = 0.0,
    ) -> None:
        super().__init__()
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.frame_stride = 2  # the stride-2 TDNN after the FCM head: T' = ceil(T / 2)
        self.head = FCM(m_channels, fcm_blocks, feat_dim)
        self.xvector = nn.ModuleDict({"tdnn": TDNNLayer(self.head.out_channels, init_channels, 5, stride=2)})
        channels = init_channels
        for i, (layers, dilation) in enumerate(zip(block_layers, block_dilations)):
            self.xvector[f"block{i + 1}"] = CAMDenseTDNNBlock(
                layers, channels, growth_rate, bn_size * growth_rate, 3, dilation, seg_len)
            channels += layers * growth_rate
            self.xvector[f"transit{i + 1}"] = TransitLayer(channels, channels // 2)
            channels //= 2
        self.xvector["out_nonlinear"] = _Nonlinear(channels)
        self.xvector["stats"] = StatisticsPooling(stats_eps)
        self.xvector["dense"] = DenseLayer(2 * channels, embed_dim)
        self._num_blocks = len(block_layers)

    def _frames(self, feats: torch.Tensor, lengths: torch.Tensor | None):
        if feats.dim() != 3 or feats.size(2) != self.feat_dim:
            raise ValueError(f"feats must be (B, T, {self.feat_dim}), got {tuple(feats.shape)}")
        batch, frames = feats.shape[:2]
        if lengths is not None:
            lengths = padded_lengths(check_lengths(lengths, batch, frames).to(feats.device), frames)
        mask = None if lengths is None else time_mask(lengths, frames, feats.dtype).unsqueeze(1)
        x = self.head(_mask(feats.transpose(1, 2), mask), None if mask is None else mask.unsqueeze(1))
        x = self.xvector["tdnn"](x)
        lengths = strided_lengths(lengths, 2)
        mask = None if lengths is None else time_mask(lengths, x.size(2), x.dtype).unsqueeze(1)
        for i in range(self._num_blocks):
            x = self.xvector[f"block{i + 1}"](x, mask, lengths)
            x = self.xvector[f"transit{i + 1}"](x)
        return self.xvector["out_nonlinear"](x), lengths, mask

    def forward_frames(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Frame-level map before pooling, ``(B, C, ceil(T / 2))``, padded frames zeroed."""
        x, _, mask = self._frames(feats, lengths)
        return _mask(x, mask)

    def forward_pooled(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """What follows :meth:`forward_frames`: ``frames (B, C, T')`` with ``lengths (B,)`` valid
        frames -> ``(B, embed_dim)`` (statistics pooling, dense layer)."""
        return self.xvector["dense"](self.xvector["stats"](frames, lengths))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``(B, embed_dim)`` of ``feats (B, T, F)`` with ``lengths (B,)`` valid frames."""
        x, lengths, _ = self._frames(feats, lengths)
        return self.forward_pooled(x, lengths)


def _campplus(overrides: dict, **defaults) -> CAMPPlus:
    return build(CAMPPlus, defaults, overrides)


@register_model
def campplus(**overrides) -> CAMPPlus:
    """CAM++ as 3D-Speaker builds it (embedding 192): 6,848,544 parameters."""
    return _campplus(overrides)


@register_model
def campplus_e512(**overrides) -> CAMPPlus:
    """CAM++ as WeSpeaker builds it (embedding 512, TSTP): 7,176,224 parameters."""
    return _campplus(overrides, embed_dim=512, stats_eps=1e-7)


@register_model
def campplus_tiny(**overrides) -> CAMPPlus:
    """Tiny CAM++ (8-channel head, growth 8, two layers per block, 16-frame segments): tests."""
    return _campplus(overrides, embed_dim=64, growth_rate=8, bn_size=2, init_channels=32, m_channels=8,
                     fcm_blocks=(1, 1), block_layers=(2, 2, 2), seg_len=16)
