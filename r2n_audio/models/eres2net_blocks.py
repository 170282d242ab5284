"""Pieces shared by ERes2Net and ERes2NetV2: attentional feature fusion, the ERes2Net block,
and the trunk both networks put them in.

Module names and shapes are 3D-Speaker's (``speakerlab/models/eres2net/``), so its state_dicts
load as they are. The function is upstream's; four things make it faster on CPU:

- in eval mode the BatchNorm after each convolution is folded into it
  (:func:`r2n_audio.models.layers.conv_bn`): one pass instead of two;
- activations run channels-last, which oneDNN convolves without reordering;
- AFF adds two half convolutions instead of concatenating its inputs, and blends as
  ``y + x + t (x - y)`` in place;
- in inference, masks and activations are applied in place: a fresh map of many MB costs
  about as much as a pass over it (new pages), so fewer fresh maps is faster.

Padding. Only a 3x3 convolution mixes frames, so exactly the maps that feed one are zeroed past
each utterance's (strided) length: the input, each block's 1x1 entry output and every split
that feeds the next split, and the maps entering the trunk's 3x3 downsampling convs. Pointwise
work (1x1 convs, BatchNorm, AFF) on padded frames is harmless, statistics pooling reads valid
frames only. A padded batch then gives each utterance's embedding alone (eval mode; in
training, BatchNorm batch statistics include padded frames, as in every backbone here). With
``lengths`` None, or every length full outside tracing, no mask is made at all.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from r2n_audio.errors import ModelError
from r2n_audio.models.layers import check_lengths, conv_bn, padded_lengths, strided_lengths
from r2n_audio.models.pooling import StatisticsPooling
from r2n_audio.models.res2net2d import mask4d, masked

__all__ = ["CLIP", "clip_", "AFF", "ERes2NetBlock", "ERes2NetTrunk"]

CLIP = 20.0
"""Upper clip of the blocks' activation: upstream's ``ReLU`` is ``nn.Hardtanh(0, 20)``."""


def clip_(x: torch.Tensor) -> torch.Tensor:
    """Upstream's ``ReLU`` (``Hardtanh(0, 20)``), in place."""
    return F.hardtanh_(x, 0.0, CLIP)


def _masked_(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """:func:`masked`, in place where autograd does not need ``x``; out of place when traced
    (one graph whatever the grad mode)."""
    if mask is None or x.requires_grad or torch.jit.is_tracing():
        return masked(x, mask)
    return x.mul_(mask)


class AFF(nn.Module):
    """Attentional feature fusion (Dai et al., WACV 2021) as ERes2Net uses it: local attention only.

    ``t = tanh(BN(conv(SiLU(BN(conv([x, y]))))))`` (1x1 convs ``2C -> C/r -> C``), output
    ``x (1 + t) + y (1 - t)``. Pointwise, so zeros at padded frames in both inputs stay zeros.
    Keys ``local_att.{0,1,3,4}.*`` as upstream.

    Shapes: ``x, y (B, C, F, T) -> (B, C, F, T)``.
    """

    def __init__(self, channels: int = 64, r: int = 4) -> None:
        super().__init__()
        inter = channels // r
        self.channels = channels
        self.local_att = nn.Sequential(
            nn.Conv2d(channels * 2, inter, 1), nn.BatchNorm2d(inter), nn.SiLU(inplace=True),
            nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        conv1, bn1, _, conv2, bn2 = self.local_att
        if bn1.training:
            return torch.addcmul(x + y, torch.tanh(self.local_att(torch.cat((x, y), 1))), x - y)
        # conv([x, y]) = conv_x(x) + conv_y(y): no concatenated copy; then two fresh maps, not five
        c = self.channels
        h = F.conv2d(x, conv1.weight[:, :c], conv1.bias).add_(F.conv2d(y, conv1.weight[:, c:]))
        t = conv_bn(F.silu(bn1(h), inplace=True), conv2, bn2).tanh_()
        return (x - y).mul_(t).add_(x).add_(y)


class ERes2NetBlock(nn.Module):
    """ERes2Net's basic block: local feature fusion inside a Res2Net-style block.

    Strided 1x1 entry to ``width * scale`` channels (``width = floor(planes * base_width / 64)``),
    split into ``scale`` groups, **every** split convolved (3x3, BN, clip): ``y_0 = f_0(x_0)``,
    ``y_i = f_i(y_{i-1} + x_i)``, or ``f_i(AFF_i(y_{i-1}, x_i))`` in a fusion block; concat,
    1x1 exit to ``planes * expansion`` + BN, + shortcut (1x1 strided conv + BN when the shape
    changes), clip. Upstream: ``BasicBlockERes2Net`` / ``BasicBlockERes2Net_diff_AFF`` and the
    V2 pair ``BasicBlockERes2NetV2`` / ``BasicBlockERes2NetV2AFF``.

    Shapes: ``forward(x (B, in_planes, F, T), mask (B, 1, 1, T') | None) ->
    (B, planes * expansion, F', T')``, ``mask`` the valid frames at the output resolution.
    """

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, base_width: int = 32, scale: int = 2,
        expansion: int = 2, fuse: bool = False,
    ) -> None:
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        self.width = width
        self.conv1 = nn.Conv2d(in_planes, width * scale, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, 1, 1, bias=False) for _ in range(scale))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale))
        self.fuse_models = nn.ModuleList(AFF(width) for _ in range(scale - 1)) if fuse else None
        self.conv3 = nn.Conv2d(width * scale, planes * expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion)
        self.shortcut = nn.Sequential()  # identity, no keys, as upstream
        if stride != 1 or in_planes != planes * expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes * expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * expansion),
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        spx = _masked_(clip_(conv_bn(x, self.conv1, self.bn1)), mask).split(self.width, 1)
        ys: list[torch.Tensor] = []
        last = len(self.convs) - 1
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i == 0:
                sp = spx[0]
            elif self.fuse_models is None:
                sp = sp + spx[i]
            else:
                sp = self.fuse_models[i - 1](sp, spx[i])
            sp = clip_(conv_bn(sp, conv, bn))
            if i < last:  # feeds the next split's 3x3 conv
                sp = _masked_(sp, mask)
            ys.append(sp)
        out = conv_bn(torch.cat(ys, 1), self.conv3, self.bn3)
        residual = x if len(self.shortcut) == 0 else conv_bn(x, self.shortcut[0], self.shortcut[1])
        return clip_(out.add_(residual))


def _out_frames(frames: int, stride: int) -> int:
    return (frames - 1) // stride + 1


class ERes2NetTrunk(nn.Module):
    """Stem (3x3 conv, BN, ReLU) and four stages of :class:`ERes2NetBlock` (fusion blocks in
    stages 3-4, strides 1, 2, 2, 2 on frequency and time), statistics pooling over time, and
    ``seg_1`` (+ ``seg_bn_1``, ``seg_2`` with ``two_emb_layer``) to ``embed_dim``.

    Subclasses define ``_fuse(outs, masks) -> (B, C, F', T')``: how the stage outputs are fused
    into the map that is pooled. ``stats_channels`` is that map's channel count.

    Shapes: ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``;
    ``forward_frames -> (B, C, F/8, T/8)`` (padded frames zeroed; channels-last in memory).
    """

    def __init__(
        self, m_channels: int, num_blocks: Sequence[int], base_width: int, scale: int, expansion: int,
        feat_dim: int, embed_dim: int, pool_eps: float, two_emb_layer: bool, pooling_func: str,
        stats_channels: int,
    ) -> None:
        if pooling_func != "TSTP":
            raise ModelError(f"{type(self).__name__} is built with TSTP pooling only, got {pooling_func!r}")
        if len(num_blocks) != 4:
            raise ModelError(f"num_blocks needs 4 stages, got {list(num_blocks)}")
        super().__init__()
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.frame_stride = 8  # stages 2-4 each stride time by 2: T' = ceil(T / 8)
        self.conv1 = nn.Conv2d(1, m_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        in_planes = m_channels
        for i, depth in enumerate(num_blocks):
            planes, blocks = m_channels * 2**i, []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                fuse = i >= 2  # AFF inside the blocks of stages 3 and 4
                blocks.append(ERes2NetBlock(in_planes, planes, stride, base_width, scale, expansion, fuse))
                in_planes = planes * expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        freq = feat_dim
        for _ in range(3):
            freq = _out_frames(freq, 2)
        self.pool = StatisticsPooling(pool_eps)
        self.seg_1 = nn.Linear(2 * stats_channels * freq, embed_dim)
        self.two_emb_layer = two_emb_layer
        self.seg_bn_1 = nn.BatchNorm1d(embed_dim, affine=False) if two_emb_layer else nn.Identity()
        self.seg_2 = nn.Linear(embed_dim, embed_dim) if two_emb_layer else nn.Identity()

    def _fuse(self, outs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
        raise NotImplementedError

    def _frames(self, feats: torch.Tensor, lengths: torch.Tensor | None):
        """Fused last-stage map ``(B, C, F', T')`` (padded frames not zeroed), its lengths and
        its mask (both None when nothing is padded)."""
        if feats.dim() != 3 or feats.size(2) != self.feat_dim:
            raise ModelError(f"feats must be (B, T, {self.feat_dim}), got {tuple(feats.shape)}")
        frames = feats.size(1)
        if lengths is not None:
            lengths = padded_lengths(check_lengths(lengths, feats.size(0), frames).to(feats.device),
                                     frames)
        # (B, F, T) -> (B, 1, F, T) laid out channels-last: oneDNN's fast path for every conv
        x = feats.transpose(1, 2).contiguous().unsqueeze(3).permute(0, 3, 1, 2)
        masks, all_lengths = [], [lengths]
        for _ in range(3):
            all_lengths.append(strided_lengths(all_lengths[-1], 2))
        for length in all_lengths:
            masks.append(mask4d(length, frames, x.dtype))
            frames = _out_frames(frames, 2)
        out = F.relu_(conv_bn(masked(x, masks[0]), self.conv1, self.bn1))
        outs = []
        for i, mask in enumerate(masks):
            for block in getattr(self, f"layer{i + 1}"):
                out = block(out, mask)
            outs.append(out)
        return self._fuse(outs, masks), all_lengths[-1], masks[-1]

    def forward_frames(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The fused map before pooling, ``(B, C, F', T')``, padded frames zeroed."""
        x, _, mask = self._frames(feats, lengths)
        return masked(x, mask)

    def forward_pooled(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """What follows :meth:`forward_frames`: ``frames (B, C, F', T')`` with ``lengths (B,)``
        valid frames -> ``(B, embed_dim)`` (statistics pooling, embedding layer(s))."""
        embed = self.seg_1(self.pool(frames, lengths))
        if self.two_emb_layer:
            embed = self.seg_2(self.seg_bn_1(F.relu(embed)))
        return embed

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``feats (B, T, F)``, ``lengths (B,)`` valid frames or None -> ``(B, embed_dim)``."""
        x, lengths, _ = self._frames(feats, lengths)
        return self.forward_pooled(x, lengths)
