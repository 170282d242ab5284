"""ERes2NetV2: ERes2Net with wider stages and only the last global fusion (3D-Speaker).

Chen, Zheng, Wang, Cheng, Zhu, Chen and Qi, "ERes2NetV2: Boosting Short-Duration Speaker
Verification Performance with Computational Efficiency", Interspeech 2024 (arXiv:2406.02167).

What each factory reproduces (``feat_dim=80``, embedding 192):

==========================  ==============================================================  ==========
name                        upstream                                                        parameters
==========================  ==============================================================  ==========
``eres2netv2``              3D-Speaker ``speakerlab.models.eres2net.ERes2NetV2.ERes2NetV2``  17,859,632
                            ``(feat_dim=80, embedding_size=192, baseWidth=26, scale=2,
                            expansion=2)`` (m_channels 64)
``eres2netv2_w24_s4_ep4``   same class, ``baseWidth=24, scale=4, expansion=4``              53,513,632
``eres2netv2_tiny``         for tests (m 8, blocks 1-1-2-1, width 24, scale 4, expansion 4)
==========================  ==============================================================  ==========

State dicts are 3D-Speaker's one to one (ModelScope ships bare state dicts of this class, e.g.
``pretrained_eres2netv2.ckpt``): no key map is needed. Computation, speed-ups and padding
invariance as :mod:`r2n_audio.models.eres2net_blocks` describes.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from r2n_audio.models.eres2net_blocks import AFF, ERes2NetTrunk
from r2n_audio.models.registry import build, register_model
from r2n_audio.models.res2net2d import masked

__all__ = ["ERes2NetV2"]


class ERes2NetV2(ERes2NetTrunk):
    """ERes2NetV2: four ERes2Net stages, the third stage fused into the fourth.

    ``f34 = AFF(out4, layer3_ds(out3))`` (3x3 stride-2 conv, no BN), statistics pooling of
    ``f34``, ``seg_1``.

    Parameters
    ----------
    m_channels : int
        Stage-1 planes (doubling per stage), 64 upstream.
    num_blocks : sequence of 4 int
        Blocks per stage (``[3, 4, 6, 3]``).
    base_width, scale, expansion : int
        Split width ``floor(planes * base_width / 64)``, splits per block, stage output
        ``planes * expansion`` (26, 2, 2 or 24, 4, 4).
    feat_dim, embed_dim : int
        Fbank bins, embedding size.
    pool_eps : float
        Variance floor of the statistics pooling (3D-Speaker's 1e-8).
    two_emb_layer : bool
        ReLU, BatchNorm (no affine) and a second linear layer after ``seg_1``.
    pooling_func : str
        ``"TSTP"`` only; accepted so upstream configs read as they are.

    Shapes: ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``.
    """

    def __init__(
        self, m_channels: int = 64, num_blocks: Sequence[int] = (3, 4, 6, 3), base_width: int = 26,
        scale: int = 2, expansion: int = 2, feat_dim: int = 80, embed_dim: int = 192,
        pool_eps: float = 1e-8, two_emb_layer: bool = False, pooling_func: str = "TSTP",
    ) -> None:
        channels = m_channels * expansion
        super().__init__(m_channels, num_blocks, base_width, scale, expansion, feat_dim, embed_dim,
                         pool_eps, two_emb_layer, pooling_func, stats_channels=channels * 8)
        self.layer3_ds = nn.Conv2d(channels * 4, channels * 8, 3, 2, 1, bias=False)
        self.fuse34 = AFF(channels * 8)

    def _fuse(self, outs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
        return self.fuse34(outs[3], self.layer3_ds(masked(outs[2], masks[2])))


def _net(overrides: dict, **defaults) -> ERes2NetV2:
    return build(ERes2NetV2, defaults, overrides)


@register_model
def eres2netv2(**overrides) -> ERes2NetV2:
    """3D-Speaker ERes2NetV2 (width 26, scale 2, expansion 2, embedding 192): 17,859,632 parameters."""
    return _net(overrides)


@register_model
def eres2netv2_w24_s4_ep4(**overrides) -> ERes2NetV2:
    """3D-Speaker ERes2NetV2 w24 s4 ep4 (embedding 192): 53,513,632 parameters."""
    return _net(overrides, base_width=24, scale=4, expansion=4)


@register_model
def eres2netv2_tiny(**overrides) -> ERes2NetV2:
    """Tiny ERes2NetV2 for tests (m 8, blocks 1-1-2-1, w24 s4 ep4, embedding 64): 815,568 parameters."""
    return _net(overrides, m_channels=8, num_blocks=(1, 1, 2, 1), base_width=24, scale=4, expansion=4,
                embed_dim=64)
