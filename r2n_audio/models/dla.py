"""Res2Net-DLA: Res2Net blocks in Deep Layer Aggregation trees.

Res2Net-DLA-60 and Res2NeXt-DLA-60 of Gao et al., "Res2Net: A New Multi-scale Backbone
Architecture", TPAMI 2021, on DLA (Yu, Wang, Shelhamer and Darrell, "Deep Layer Aggregation",
CVPR 2018), as the official ``dla.py`` (github.com/Res2Net/Res2Net-PretrainedModels) builds
them, module names included: levels ``[1, 1, 1, 2, 3, 1]``, channels
``[16, 32, 128, 256, 512, 1024]``, block output = ``planes`` (no expansion), width
``floor(planes * 28 / 128)`` (Res2NeXt: ``planes * 8 // 32`` in 8 groups), a stage block iff
stride > 1, the tree max-pools and projects the residual, a 1x1 conv classifier.
Parameters (ImageNet, ``in_channels=3, num_classes=1000``): res2net_dla60 21,145,544;
res2next_dla60 17,330,456.

Differences from the official code, none changing weights or even-sized outputs: the tree's
2x2 max-pool uses ``ceil_mode`` so odd sizes work (the official code fails on them); the
classifier averages globally instead of a fixed 7x7 pool (equal at 224x224).

Speaker mode (default) as in :mod:`res2net2d`: ``feats (B, T, F)`` -> ``(B, 1, F, T)``,
padded frames zeroed after every ReLU, statistics pooling over time, linear to ``embed_dim``;
padding-invariant in eval mode.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from r2n_audio.models.pooling import StatisticsPooling
from r2n_audio.models.registry import build, register_model
from r2n_audio.models.res2net2d import Res2Bottleneck, SpeakerImageNet, mask4d, masked, masked_sequential

__all__ = ["DlaBottle2neck", "DlaRoot", "DlaTree", "Res2NetDla"]


class DlaBottle2neck(Res2Bottleneck):
    """DLA's Res2Net block: ``inplanes -> planes``, residual given by the tree."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, base_width: int = 28,
                 scale: int = 4, cardinality: int = 1) -> None:
        if cardinality == 1:
            width = int(math.floor(planes * base_width / 128.0))
        else:
            width = planes * cardinality // 32
        super().__init__(inplanes, width, scale, planes, stride, stride != 1, cardinality)


class DlaRoot(nn.Module):
    """Aggregation node: 1x1 conv over the concatenated children, BN, (+ first child), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.residual = residual

    def forward(self, children: list[torch.Tensor], lengths: torch.Tensor | None) -> torch.Tensor:
        x = self.bn(self.conv(torch.cat(children, 1)))
        if self.residual:
            x = x + children[0]
        return masked(torch.relu(x), mask4d(lengths, x.size(3), x.dtype))


class DlaTree(nn.Module):
    """Hierarchical aggregation tree of ``levels`` (official ``Tree``, same arguments)."""

    def __init__(self, levels: int, block_args: dict, in_channels: int, out_channels: int,
                 stride: int = 1, level_root: bool = False, root_dim: int = 0, root_residual: bool = False,
                 keep_unused: bool = False) -> None:
        super().__init__()
        root_dim = root_dim or 2 * out_channels
        if level_root:
            root_dim += in_channels
        if levels == 1:
            self.tree1 = DlaBottle2neck(in_channels, out_channels, stride, **block_args)
            self.tree2 = DlaBottle2neck(out_channels, out_channels, 1, **block_args)
            self.root = DlaRoot(root_dim, out_channels, root_residual)
        else:
            self.tree1 = DlaTree(levels - 1, block_args, in_channels, out_channels, stride,
                                 root_residual=root_residual, keep_unused=keep_unused)
            self.tree2 = DlaTree(levels - 1, block_args, out_channels, out_channels,
                                 root_dim=root_dim + out_channels, root_residual=root_residual,
                                 keep_unused=keep_unused)
        self.level_root, self.levels, self.stride = level_root, levels, stride
        self.downsample = nn.MaxPool2d(stride, stride, ceil_mode=True) if stride > 1 else None
        self.project = None
        # only a leaf tree uses its projected residual; the official code also builds (and
        # computes, then discards) one in every inner tree
        if in_channels != out_channels and (levels == 1 or keep_unused):
            self.project = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                         nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None,
                children: list[torch.Tensor] | None = None):
        children = [] if children is None else children
        # inputs are post-ReLU (>= 0) with padding zeroed, so max-pooling over it is harmless
        bottom = x if self.downsample is None else self.downsample(x)
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = bottom if self.project is None else self.project(bottom)
            x1, lengths1 = self.tree1(x, lengths, residual)
            x2, _ = self.tree2(x1, lengths1)
            return self.root([x2, x1, *children], lengths1), lengths1
        x1, lengths1 = self.tree1(x, lengths)
        children.append(x1)
        return self.tree2(x1, lengths1, children)


class Res2NetDla(SpeakerImageNet):
    """Res2Net-DLA network (see the module doc).

    Parameters
    ----------
    levels, channels : sequence of int
        Six entries each (DLA-60: ``[1, 1, 1, 2, 3, 1]``, ``[16, 32, 128, 256, 512, 1024]``).
    base_width, scale, cardinality : int
        Block arguments.
    keep_unused : bool, optional
        Build the inner trees' residual projections the official code builds but never uses
        (297,472 parameters in DLA-60; timm drops them). Default: kept for classifiers
        (``num_classes > 0``, so official checkpoints load and counts match the paper),
        dropped for speaker backbones (no parameter without a gradient, which DDP rejects).
    in_channels, num_classes, feat_dim, embed_dim : int
        As :class:`~r2n_audio.models.res2net2d.ResNet2d`.

    Shapes (speaker mode): ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``;
    ``forward_frames -> (B, channels[-1], F', T')``.
    """

    def __init__(
        self, levels: Sequence[int] = (1, 1, 1, 2, 3, 1), channels: Sequence[int] = (16, 32, 128, 256, 512, 1024),
        base_width: int = 28, scale: int = 4, cardinality: int = 1, residual_root: bool = False,
        in_channels: int = 1, num_classes: int = 0, feat_dim: int = 80, embed_dim: int = 256,
        keep_unused: bool | None = None,
    ) -> None:
        super().__init__()
        if num_classes == 0 and in_channels != 1:
            raise ValueError("a speaker backbone (num_classes=0) takes in_channels=1")
        self.num_classes, self.feat_dim, self.embed_dim = num_classes, feat_dim, embed_dim
        self.frame_stride = 32  # level1 to level5 each stride time by 2
        self.base_layer = nn.Sequential(nn.Conv2d(in_channels, channels[0], 7, 1, 3, bias=False),
                                        nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        self.level0 = self._conv_level(channels[0], channels[0], levels[0], 1)
        self.level1 = self._conv_level(channels[0], channels[1], levels[1], 2)
        block_args = dict(base_width=base_width, scale=scale, cardinality=cardinality)
        keep_unused = bool(num_classes) if keep_unused is None else keep_unused
        for i in range(2, 6):
            self.add_module(f"level{i}", DlaTree(levels[i], block_args, channels[i - 1], channels[i], 2,
                                                 level_root=i > 2, root_residual=residual_root,
                                                 keep_unused=keep_unused))
        if num_classes:
            self.fc = nn.Conv2d(channels[-1], num_classes, 1)
        else:
            freq = feat_dim
            for _ in range(5):
                freq = (freq - 1) // 2 + 1
            self.pool = StatisticsPooling()
            self.embedding = nn.Linear(2 * channels[-1] * freq, embed_dim)

    @staticmethod
    def _conv_level(inplanes: int, planes: int, convs: int, stride: int) -> nn.Sequential:
        modules: list[nn.Module] = []
        for i in range(convs):
            modules += [nn.Conv2d(inplanes, planes, 3, stride if i == 0 else 1, 1, bias=False),
                        nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
            inplanes = planes
        return nn.Sequential(*modules)

    def _trunk(self, x: torch.Tensor, lengths: torch.Tensor | None):
        for name in ("base_layer", "level0", "level1"):
            x, lengths = masked_sequential(getattr(self, name), x, lengths)
        for i in range(2, 6):
            x, lengths = getattr(self, f"level{i}")(x, lengths)
        return x, lengths

    def _classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3), keepdim=True)).flatten(1)  # fc is the official 1x1 conv


@register_model
def res2net_dla60(**overrides) -> Res2NetDla:
    """Res2Net-DLA-60 (26w x 4s in the paper's table): 21,145,544 parameters (ImageNet)."""
    return build(Res2NetDla, {}, overrides)


@register_model
def res2next_dla60(**overrides) -> Res2NetDla:
    """Res2NeXt-DLA-60 (8 groups, 4s): 17,330,456 parameters (ImageNet)."""
    return build(Res2NetDla, dict(cardinality=8), overrides)


@register_model
def res2net_dla_tiny(**overrides) -> Res2NetDla:
    """Tiny Res2Net-DLA (channels 8..128, levels of DLA-34 depth) for tests (speaker)."""
    return build(Res2NetDla, dict(levels=(1, 1, 1, 2, 2, 1), channels=(8, 16, 32, 64, 96, 128),
                                  embed_dim=64), overrides)
