"""ERes2Net: Res2Net with local and global attentional feature fusion (3D-Speaker, WeSpeaker).

Chen, Zheng, Wang, Cheng, Chen and Qi, "An Enhanced Res2Net with Local and Global Feature
Fusion for Speaker Verification", Interspeech 2023 (arXiv:2305.12838).

What each factory reproduces (upstream class and constructor arguments; ``feat_dim=80``):

=====================  ==============================================================  ===========
name                   upstream                                                        parameters
=====================  ==============================================================  ===========
``eres2net_base``      3D-Speaker ``speakerlab.models.eres2net.ERes2Net.ERes2Net``       6,610,688
                       ``(feat_dim=80, embedding_size=192)`` (m_channels 32)
``eres2net_large``     same class, ``m_channels=64``                                   22,462,784
``eres2net_huge``      3D-Speaker ``ERes2Net_huge.ERes2Net(feat_dim=80,                 55,165,024
                       embedding_size=192)`` (m 64, base width 24, scale 3, expansion 4)
``eres2net34_base``    WeSpeaker ``wespeaker.models.eres2net.ERes2Net34_Base(feat_dim=80,  6,610,688
                       embed_dim=192, pooling_func="TSTP", two_emb_layer=False)``
``eres2net34_large``   WeSpeaker ``ERes2Net34_Large`` (same arguments)                   22,462,784
``eres2net34_aug``     WeSpeaker ``ERes2Net34_aug`` (same arguments; the huge network)   55,165,024
``eres2net_tiny``      for tests (m 8, blocks 1-1-2-1, scale 3, embedding 64)
=====================  ==============================================================  ===========

The WeSpeaker and 3D-Speaker models are one network: ``eres2net34_*`` differ from
``eres2net_*`` only in the statistics pooling's variance floor (WeSpeaker ``1e-7``, 3D-Speaker
``1e-8``). Both toolkits' ``two_emb_layer`` is an argument here too (default False, as their
published models). Only ``TSTP`` pooling is built (every published ERes2Net uses it).

State dicts. 3D-Speaker's keys are ours one to one (ModelScope ships bare state dicts of these
classes: ``load_state_dict(ckpt, strict=True)`` works as is). WeSpeaker's fusion blocks
(``layer3``, ``layer4``) name their first split ``conv2_1`` / ``bn2_1`` and number the rest
from 0; :func:`upstream_key_map` renames them. WeSpeaker's ``avg_model.pt`` also holds the
training head (``projection.*``), which is not part of the embedding network: drop it.

Computation is upstream's (the block activation clips at 20, the stem's does not), faster and
padding-invariant: see :mod:`r2n_audio.models.eres2net_blocks`.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from r2n_audio.errors import ModelError
from r2n_audio.models.eres2net_blocks import AFF, ERes2NetTrunk
from r2n_audio.models.registry import build, register_model
from r2n_audio.models.res2net2d import masked

__all__ = ["ERes2Net", "upstream_key_map"]


class ERes2Net(ERes2NetTrunk):
    """ERes2Net: four ERes2Net stages with bottom-up global fusion of every stage.

    ``f12 = AFF(out2, ds1(out1))``, ``f123 = AFF(out3, ds2(f12))``, ``f1234 = AFF(out4, ds3(f123))``
    (``ds``: 3x3 stride-2 convs, no BN), then statistics pooling of ``f1234`` and ``seg_1``.

    Parameters
    ----------
    m_channels : int
        Stage-1 planes (doubling per stage): 32 base, 64 large / huge.
    num_blocks : sequence of 4 int
        Blocks per stage (ResNet-34's ``[3, 4, 6, 3]``).
    base_width, scale, expansion : int
        Split width ``floor(planes * base_width / 64)``, splits per block, output ``planes *
        expansion`` (32, 2, 2 base / large; 24, 3, 4 huge).
    feat_dim, embed_dim : int
        Fbank bins, embedding size.
    pool_eps : float
        Variance floor of the statistics pooling (3D-Speaker 1e-8, WeSpeaker 1e-7).
    two_emb_layer : bool
        ReLU, BatchNorm (no affine) and a second linear layer after ``seg_1``.
    pooling_func : str
        ``"TSTP"`` only (statistics pooling); accepted so upstream configs read as they are.

    Shapes: ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``.
    """

    def __init__(
        self, m_channels: int = 32, num_blocks: Sequence[int] = (3, 4, 6, 3), base_width: int = 32,
        scale: int = 2, expansion: int = 2, feat_dim: int = 80, embed_dim: int = 192,
        pool_eps: float = 1e-8, two_emb_layer: bool = False, pooling_func: str = "TSTP",
    ) -> None:
        channels = m_channels * expansion
        super().__init__(m_channels, num_blocks, base_width, scale, expansion, feat_dim, embed_dim,
                         pool_eps, two_emb_layer, pooling_func, stats_channels=channels * 8)
        self.layer1_downsample = nn.Conv2d(channels, channels * 2, 3, 2, 1, bias=False)
        self.layer2_downsample = nn.Conv2d(channels * 2, channels * 4, 3, 2, 1, bias=False)
        self.layer3_downsample = nn.Conv2d(channels * 4, channels * 8, 3, 2, 1, bias=False)
        self.fuse_mode12 = AFF(channels * 2)
        self.fuse_mode123 = AFF(channels * 4)
        self.fuse_mode1234 = AFF(channels * 8)

    def _fuse(self, outs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
        out1, out2, out3, out4 = outs
        fused = self.fuse_mode12(out2, self.layer1_downsample(masked(out1, masks[0])))
        fused = self.fuse_mode123(out3, self.layer2_downsample(masked(fused, masks[1])))
        return self.fuse_mode1234(out4, self.layer3_downsample(masked(fused, masks[2])))


_WESPEAKER_SPLIT = re.compile(r"^(layer\d+\.\d+)\.(conv2_1|bn2_1|convs\.\d+|bns\.\d+)\.(.+)$")


def upstream_key_map(keys: Iterable[str], source: str) -> dict[str, str]:
    """Map an upstream ERes2Net state_dict's keys to ours.

    Parameters
    ----------
    keys : iterable of str
        The upstream state_dict's keys.
    source : {"3dspeaker", "wespeaker"}
        ``"3dspeaker"``: identity. ``"wespeaker"``: in each block that has ``conv2_1`` (the
        fusion blocks), ``conv2_1`` / ``bn2_1`` -> ``convs.0`` / ``bns.0`` and ``convs.i`` /
        ``bns.i`` -> ``convs.{i+1}`` / ``bns.{i+1}``; everything else (``projection.*``
        included, which the caller drops) keeps its name.

    Returns
    -------
    dict
        ``{upstream_key: our_key}`` for every key given.

    >>> keys = ["layer3.0.conv2_1.weight", "layer3.0.convs.0.weight"]
    >>> upstream_key_map(keys, "wespeaker")  # doctest: +NORMALIZE_WHITESPACE
    {'layer3.0.conv2_1.weight': 'layer3.0.convs.0.weight',
     'layer3.0.convs.0.weight': 'layer3.0.convs.1.weight'}
    """
    keys = list(keys)
    if source == "3dspeaker":
        return {k: k for k in keys}
    if source != "wespeaker":
        raise ModelError(f"source must be '3dspeaker' or 'wespeaker', got {source!r}")
    fusion_blocks = {m.group(1) for m in map(_WESPEAKER_SPLIT.match, keys) if m and m.group(2) == "conv2_1"}
    mapping = {}
    for key in keys:
        m = _WESPEAKER_SPLIT.match(key)
        if m is None or m.group(1) not in fusion_blocks:
            mapping[key] = key
            continue
        block, module, rest = m.groups()
        if module in ("conv2_1", "bn2_1"):
            module = ("convs" if module == "conv2_1" else "bns") + ".0"
        else:
            kind, index = module.split(".")
            module = f"{kind}.{int(index) + 1}"
        mapping[key] = f"{block}.{module}.{rest}"
    return mapping


def _net(overrides: dict, **defaults) -> ERes2Net:
    return build(ERes2Net, defaults, overrides)


_HUGE = dict(m_channels=64, base_width=24, scale=3, expansion=4)


@register_model
def eres2net_base(**overrides) -> ERes2Net:
    """3D-Speaker ERes2Net base (m_channels 32, embedding 192): 6,610,688 parameters."""
    return _net(overrides)


@register_model
def eres2net_large(**overrides) -> ERes2Net:
    """3D-Speaker ERes2Net large (m_channels 64, embedding 192): 22,462,784 parameters."""
    return _net(overrides, m_channels=64)


@register_model
def eres2net_huge(**overrides) -> ERes2Net:
    """3D-Speaker ERes2Net huge (m 64, width 24, scale 3, expansion 4): 55,165,024 parameters."""
    return _net(overrides, **_HUGE)


@register_model
def eres2net34_base(**overrides) -> ERes2Net:
    """WeSpeaker ERes2Net34_Base (embedding 192, TSTP): 6,610,688 parameters."""
    return _net(overrides, pool_eps=1e-7)


@register_model
def eres2net34_large(**overrides) -> ERes2Net:
    """WeSpeaker ERes2Net34_Large (embedding 192, TSTP): 22,462,784 parameters."""
    return _net(overrides, m_channels=64, pool_eps=1e-7)


@register_model
def eres2net34_aug(**overrides) -> ERes2Net:
    """WeSpeaker ERes2Net34_aug (the huge network, embedding 192, TSTP): 55,165,024 parameters."""
    return _net(overrides, **_HUGE, pool_eps=1e-7)


@register_model
def eres2net_tiny(**overrides) -> ERes2Net:
    """Tiny ERes2Net for tests (m 8, blocks 1-1-2-1, scale 3, embedding 64): 367,648 parameters."""
    return _net(overrides, m_channels=8, num_blocks=(1, 1, 2, 1), scale=3, embed_dim=64)
