"""2-D Res2Net: Bottle2neck, the basic Res2 block, one ResNet-style trunk that takes a block.

Res2Net: Gao, Cheng, Zhao, Zhang, Yang and Torr, "Res2Net: A New Multi-scale Backbone
Architecture", TPAMI 2021 (arXiv:1904.01169). Built as the official code
(github.com/Res2Net/Res2Net-PretrainedModels) and timm build it, with the same module names,
so their state_dicts load one to one: the *last* split is passed through (an
``AvgPool2d(3, stride, 1)`` in a stage block, layer1.0 included), v1b = deep stem + average-pool
shortcut. ``create_model(name, in_channels=3, num_classes=1000)`` gives the ImageNet classifier
with the official parameter count; the default is a speaker backbone on the fbank "image".

Speaker mode. ``feats (B, T, F)`` become ``(B, 1, F, T)``; the trunk strides frequency and
time alike; statistics pooling over time of the ``C * F'`` channels, a linear layer to
``embed_dim``. Padding: every block zeroes the frames past each utterance's (strided) length
before its convolutions and pools, the v1b average-pool shortcut divides by the valid count,
SE and statistics use valid frames only. Zero padding at the tensor end then coincides with
zero padding at each utterance's end, so **every 2-D backbone here is padding-invariant** in
eval mode (in training, BatchNorm batch statistics include padded frames).

The ``resnet34`` speaker model is WeSpeaker's ResNet34 (``two_emb_layer=False``) one to one:
its keys map by renaming ``shortcut.`` -> ``downsample.`` and ``seg_1.`` -> ``embedding.``.
``res2net34_w32_s2`` is WeSpeaker's Res2Net34_Base likewise.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from r2n_audio.models.layers import (
    SimAM2d, SqueezeExcite2d, check_lengths, conv_bn, fast_inference, padded_lengths, strided_lengths,
    time_mask,
)
from r2n_audio.models.pooling import ChannelAttentiveStatisticsPooling, StatisticsPooling

__all__ = ["Res2Bottleneck", "Bottle2neck", "BasicBlock", "SimAMBasicBlock", "BasicRes2Block", "ResNet2d", "masked", "mask4d", "masked_sequential", "speaker_image", "SpeakerImageNet"]


def mask4d(lengths: torch.Tensor | None, frames: int, dtype: torch.dtype) -> torch.Tensor | None:
    """``(B, 1, 1, T)`` mask of valid frames, or None without ``lengths`` (the trunk gets None
    when no frame is padded: :func:`speaker_image` applies :func:`padded_lengths`)."""
    return None if lengths is None else time_mask(lengths, frames, dtype).view(-1, 1, 1, frames)


def masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded frames of ``x (B, C, F, T)``."""
    return x if mask is None else x * mask


def masked_sequential(modules, x: torch.Tensor, lengths: torch.Tensor | None):
    """Run conv/BN/ReLU ``modules`` in order, tracking time strides and zeroing padded frames
    after every ReLU (so the next convolution sees zeros there, as an utterance alone does)."""
    for m in modules:
        x = m(x)
        if isinstance(m, nn.Conv2d):
            lengths = strided_lengths(lengths, m.stride[1])
        if isinstance(m, nn.ReLU):
            x = masked(x, mask4d(lengths, x.size(3), x.dtype))
    return x, lengths


def speaker_image(model: nn.Module, feats: torch.Tensor, lengths: torch.Tensor | None):
    """``feats (B, T, F)`` -> the fbank "image" ``(B, 1, F, T)`` with padded frames zeroed, and
    validated ``lengths`` (None when no frame is padded: :func:`padded_lengths`)."""
    if model.num_classes:
        raise ValueError("this model is an image classifier (num_classes > 0); call forward(images)")
    if feats.dim() != 3 or feats.size(2) != model.feat_dim:
        raise ValueError(f"feats must be (B, T, {model.feat_dim}), got {tuple(feats.shape)}")
    if lengths is not None:  # none padded: no masks anywhere in the trunk (padded_lengths)
        lengths = padded_lengths(check_lengths(lengths, feats.size(0), feats.size(1)).to(feats.device),
                                 feats.size(1))
    x = feats.transpose(1, 2).unsqueeze(1)
    return masked(x, mask4d(lengths, x.size(3), x.dtype)), lengths


def _out_frames(frames: int, stride: int) -> int:
    return (frames - 1) // stride + 1


class SpeakerImageNet(nn.Module):
    """The forward shared by the 2-D trunks (:class:`ResNet2d`, the DLA network).

    With ``num_classes > 0`` an image classifier (``images (B, C, H, W) -> logits``); otherwise a
    speaker backbone on the fbank image: ``feats (B, T, F), lengths (B,) -> (B, embed_dim)``.
    Subclasses define ``_trunk(x, lengths) -> (x, lengths)``, ``_classify(x) -> logits``,
    ``pool``, ``embedding`` and ``frame_stride`` (the trunk's time stride: ``forward_frames``
    gives ``T' = ceil(T / frame_stride)`` frames).
    """

    def forward_frames(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Last stage's map ``(B, C, F', T')`` (padded frames zeroed)."""
        return self._trunk(*speaker_image(self, feats, lengths))[0]

    def forward_pooled(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """What follows :meth:`forward_frames`: ``frames (B, C, F', T')`` with ``lengths (B,)``
        valid frames -> ``(B, embed_dim)`` (statistics pooling, embedding layer)."""
        return self.embedding(self.pool(frames, lengths))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Speaker mode: ``feats (B, T, F)`` -> ``(B, embed_dim)``; classifier: images -> logits."""
        if self.num_classes:
            return self._classify(self._trunk(x, None)[0])
        return self.forward_pooled(*self._trunk(*speaker_image(self, x, lengths)))


class Res2Bottleneck(nn.Module):
    """The Res2Net bottleneck core: 1x1 -> hierarchical 3x3 splits -> 1x1, plus a shortcut.

    Split ``i < scale-1`` gets a 3x3 conv (stride, ``cardinality`` groups), BN, ReLU; in a
    normal block conv ``i`` takes ``x_i + y_{i-1}``, in a stage block only ``x_i``. The last
    split is passed through (normal) or average-pooled (stage). Exit 1x1 + BN (no ReLU),
    optional SE, + shortcut, ReLU.

    Shapes: ``forward(x (B, inplanes, F, T), lengths (B,) | None, residual=None)
    -> (out (B, out_channels, F', T'), lengths')``.
    """

    def __init__(
        self, inplanes: int, width: int, scale: int, out_channels: int, stride: int = 1,
        stage: bool = False, cardinality: int = 1, downsample: nn.Module | None = None,
        se: bool = False, entry_stride: int = 1,
    ) -> None:
        super().__init__()
        self.width, self.scale, self.stage = width, scale, stage
        self.stride = stride * entry_stride
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, stride=entry_stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        nums = max(1, scale - 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False) for _ in range(nums)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(nums))
        self.pool = nn.AvgPool2d(3, stride, 1) if stage and scale > 1 else None
        self.conv3 = nn.Conv2d(width * scale, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.se = SqueezeExcite2d(out_channels) if se else None
        self.downsample = downsample

    def _splits(self, out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        spx = out.split(self.width, 1)
        ys = []
        sp = spx[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = spx[i] if i == 0 or self.stage else sp + spx[i]
            sp = torch.relu_(conv_bn(sp, conv, bn))
            if not self.stage:  # feeds the next split's 3x3 conv
                sp = masked(sp, mask)
            ys.append(sp)
        if self.scale == 1:  # WeSpeaker's plain bottleneck: one split, nothing to concatenate
            return ys[0]
        ys.append(spx[-1] if self.pool is None else self.pool(spx[-1]))
        return torch.cat(ys, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, residual: torch.Tensor | None = None):
        frames, entry = x.size(3), self.conv1.stride[1]
        out_lengths = strided_lengths(lengths, self.stride)
        # the 3x3 splits run at the entry conv's resolution (strided in the basic Res2 block)
        mask_in = mask4d(strided_lengths(lengths, entry), _out_frames(frames, entry), x.dtype)
        mask_out = mask4d(out_lengths, _out_frames(frames, self.stride), x.dtype)
        # eval: BN folded into the convs; in place where no producer keeps its output for backward
        out = masked(torch.relu_(conv_bn(x, self.conv1, self.bn1)), mask_in)
        out = conv_bn(self._splits(out, mask_in), self.conv3, self.bn3)
        if self.se is not None:
            out = self.se(out, mask_out)
        if residual is None:
            residual = x if self.downsample is None else self.downsample(x, lengths)
        out += residual
        return masked(torch.relu_(out), mask_out), out_lengths


class Bottle2neck(Res2Bottleneck):
    """ResNet-50/101 Res2Net block: width ``floor(planes * base_width / 64) * cardinality``,
    output ``4 * planes``; a stage block iff it has a shortcut projection or a stride."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        base_width: int = 26, scale: int = 4, cardinality: int = 1, se: bool = False,
    ) -> None:
        width = int(math.floor(planes * base_width / 64.0)) * cardinality
        super().__init__(inplanes, width, scale, planes * 4, stride, stride > 1 or downsample is not None,
                         cardinality, downsample, se)


class BasicRes2Block(Res2Bottleneck):
    """Speech-sized Res2 block in WeSpeaker's ``BasicBlockRes2Net`` layout, any scale.

    Strided 1x1 entry to ``floor(planes * base_width / 64) * scale`` channels, ``scale - 1``
    hierarchical 3x3 convs (normal-block style, last split passed through), 1x1 exit to
    ``2 * planes``. WeSpeaker and 3D-Speaker use scale 2 only.
    """

    expansion = 2

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        base_width: int = 32, scale: int = 4, cardinality: int = 1, se: bool = False,
    ) -> None:
        width = int(math.floor(planes * base_width / 64.0)) * cardinality
        super().__init__(inplanes, width, scale, planes * 2, 1, False, cardinality, downsample, se,
                         entry_stride=stride)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): 3x3 (stride) -> BN -> ReLU -> 3x3 -> BN, + shortcut,
    ReLU. Same parameters as WeSpeaker's ``BasicBlock`` (scale 1 of the family)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        base_width: int = 64, scale: int = 1, cardinality: int = 1, se: bool = False,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite2d(planes) if se else None
        self.downsample = downsample

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None):
        out_lengths = strided_lengths(lengths, self.stride)
        mask = mask4d(out_lengths, _out_frames(x.size(3), self.stride), x.dtype)
        # eval: BN folded into the convs; in place where no producer keeps its output for backward
        out = conv_bn(masked(torch.relu_(conv_bn(x, self.conv1, self.bn1)), mask), self.conv2, self.bn2)
        if self.se is not None:
            out = self.se(out, mask)
        out += x if self.downsample is None else self.downsample(x, lengths)
        return masked(torch.relu_(out), mask), out_lengths


class SimAMBasicBlock(BasicBlock):
    """:class:`BasicBlock` with parameter-free SimAM in its attention slot (after the second
    BN, before the residual add): WeSpeaker's ``SimAMBasicBlock``, same parameters."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        base_width: int = 64, scale: int = 1, cardinality: int = 1, se: bool = False,
    ) -> None:
        super().__init__(inplanes, planes, stride, downsample, base_width, scale, cardinality)
        self.se = SimAM2d()


class Downsample(nn.Sequential):
    """Shortcut projection: v1 ``[conv1x1(stride), BN]``; v1b ``[AvgPool(stride, ceil_mode,
    count_include_pad=False), conv1x1, BN]`` where the pool averages the valid frames only."""

    def __init__(self, inplanes: int, outplanes: int, stride: int, avg_down: bool) -> None:
        layers: list[nn.Module] = []
        if avg_down:
            pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
            layers.append(pool if stride > 1 else nn.Identity())
        layers += [nn.Conv2d(inplanes, outplanes, 1, 1 if avg_down else stride, bias=False),
                   nn.BatchNorm2d(outplanes)]
        super().__init__(*layers)
        self.stride = stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        first = self[0]
        if isinstance(first, nn.AvgPool2d) and lengths is not None:
            # PyTorch divides by in-bounds positions; padded frames must not count either.
            valid = time_mask(lengths, x.size(3), x.dtype).unsqueeze(1)
            share = F.avg_pool1d(valid, self.stride, self.stride, ceil_mode=True, count_include_pad=False)
            x = first(x) / share.clamp(min=1.0 / self.stride).unsqueeze(1)
            return self[2](self[1](x))
        if len(self) == 2:
            return conv_bn(x, self[0], self[1])
        return super().forward(x)


_BLOCKS = {"bottle2neck": Bottle2neck, "basic_res2": BasicRes2Block, "basic": BasicBlock,
           "simam_basic": SimAMBasicBlock}


class ResNet2d(SpeakerImageNet):
    """ResNet-style trunk taking a block: the 2-D Res2Net family and its speech-sized variants.

    Parameters
    ----------
    block : {"bottle2neck", "basic_res2", "basic", "simam_basic"}
    layers : sequence of int
        Blocks per stage (50: ``[3, 4, 6, 3]``, 101: ``[3, 4, 23, 3]``, 34: ``[3, 4, 6, 3]``).
    base_channels : int
        ``planes`` of stage 1 (doubling per stage): 64 ImageNet, 32 or 64 speech.
    stem : {"v1", "deep", "speech"}
        7x7/2 conv + max-pool; v1b 3x3 conv stack (32, 32, 64) + max-pool; 3x3/1 conv.
    avg_down : bool
        v1b average-pool shortcut.
    strides : sequence of int
        Stride of each stage (on frequency and time).
    base_width, scale, cardinality, se
        Block arguments (Res2Net width per split, splits, groups, squeeze-excitation).
    in_channels, num_classes : int
        ``num_classes > 0``: image classifier (global average pool, ``fc``), ``forward(images
        (B, in_channels, H, W)) -> (B, num_classes)``. ``0``: speaker backbone.
    feat_dim, embed_dim : int
        Speaker mode: fbank size and embedding size.
    pooling : {"tstp", "asp"}
        Speaker mode: statistics pooling, or WeSpeaker's channel-attentive ``ASP``.

    Shapes (speaker mode): ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``;
    ``forward_frames -> (B, C, F', T')``.
    """

    def __init__(
        self, block: str = "bottle2neck", layers: Sequence[int] = (3, 4, 6, 3), base_channels: int = 64,
        stem: str = "v1", avg_down: bool = False, strides: Sequence[int] = (1, 2, 2, 2),
        base_width: int = 26, scale: int = 4, cardinality: int = 1, se: bool = False,
        in_channels: int = 1, num_classes: int = 0, feat_dim: int = 80, embed_dim: int = 256,
        pooling: str = "tstp",
    ) -> None:
        super().__init__()
        if block not in _BLOCKS or stem not in ("v1", "deep", "speech"):
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, stem one of v1, deep, speech")
        if pooling not in ("tstp", "asp"):
            raise ValueError(f"pooling must be 'tstp' or 'asp', got {pooling!r}")
        if num_classes == 0 and in_channels != 1:
            raise ValueError("a speaker backbone (num_classes=0) takes in_channels=1")
        block_cls = _BLOCKS[block]
        self.num_classes, self.feat_dim, self.embed_dim = num_classes, feat_dim, embed_dim
        self.frame_stride = math.prod(self._freq_strides(stem, strides))
        self._build_stem(stem, in_channels, base_channels)
        inplanes = self.bn1.num_features
        for i, (depth, stride) in enumerate(zip(layers, strides)):
            planes = base_channels * 2**i
            blocks = []
            for j in range(depth):
                s = stride if j == 0 else 1
                down = None
                if j == 0 and (s != 1 or inplanes != planes * block_cls.expansion):
                    down = Downsample(inplanes, planes * block_cls.expansion, s, avg_down)
                blocks.append(block_cls(inplanes, planes, s, down, base_width, scale, cardinality, se))
                inplanes = planes * block_cls.expansion
            self.add_module(f"layer{i + 1}", nn.ModuleList(blocks))
        self.num_layers = len(layers)
        if num_classes:
            self.fc = nn.Linear(inplanes, num_classes)
        else:
            freq = feat_dim
            for s in self._freq_strides(stem, strides):
                freq = _out_frames(freq, s)
            self.pool = StatisticsPooling() if pooling == "tstp" else ChannelAttentiveStatisticsPooling(inplanes * freq)
            self.embedding = nn.Linear(2 * inplanes * freq, embed_dim)

    def _build_stem(self, stem: str, in_channels: int, base_channels: int) -> None:
        if stem == "deep":
            self.conv1 = nn.Sequential(
                nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            )
        elif stem == "v1":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, base_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64 if stem != "speech" else base_channels)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem != "speech" else None

    @staticmethod
    def _freq_strides(stem: str, strides: Sequence[int]) -> list[int]:
        return ([] if stem == "speech" else [2, 2]) + list(strides)

    def _stem(self, x: torch.Tensor, lengths: torch.Tensor | None):
        if fast_inference():  # oneDNN's fast layout for 3x3 convolutions on speech-sized maps
            x = x.contiguous(memory_format=torch.channels_last)
        modules = list(self.conv1) if isinstance(self.conv1, nn.Sequential) else [self.conv1]
        x, lengths = masked_sequential(modules + [self.bn1, nn.ReLU()], x, lengths)
        if self.maxpool is not None:  # inputs are >= 0, so zero padding equals -inf padding
            x = self.maxpool(x)
            lengths = strided_lengths(lengths, 2)
        return x, lengths

    def _trunk(self, x: torch.Tensor, lengths: torch.Tensor | None):
        x, lengths = self._stem(x, lengths)
        for i in range(self.num_layers):
            for block in getattr(self, f"layer{i + 1}"):
                x, lengths = block(x, lengths)
        return x, lengths

    def _classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))
