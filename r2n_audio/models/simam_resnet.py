"""SimAM-ResNet: a ResNet speaker trunk with parameter-free SimAM attention in every block.

SimAM: Yang, Zhang, Li and Xie, "SimAM: A Simple, Parameter-Free Attention Module for
Convolutional Neural Networks", ICML 2021; as a speaker model: Qin et al., "Cross-Age Speaker
Verification: Learning Age-Invariant Speaker Embeddings", Interspeech 2022, and WeSpeaker's
VoxBlink2 models (its strongest public checkpoints).

Factories and the upstream class each reproduces (``wespeaker/models/samresnet.py`` in
wespeaker-unofficial 0.0.2, defaults ``in_planes=64, embed_dim=256, acoustic_dim=80,
dropout=0``):

- ``simam_resnet34``: ``SimAM_ResNet34_ASP()``, 25,213,760 parameters.
- ``simam_resnet100``: ``SimAM_ResNet100_ASP()``, 50,232,896 parameters.
- ``simam_resnet_tiny``: a small layout for tests.

They are :class:`~r2n_audio.models.res2net2d.ResNet2d` with the ``simam_basic`` block (3x3
stride-1 stem, 64 base channels, strides 1, 2, 2, 2) and WeSpeaker's channel-attentive ``ASP``
pooling. WeSpeaker nests the trunk under ``front``; its checkpoints load through
:func:`upstream_key_map` (``front.`` dropped, ``pooling.`` -> ``pool.``, ``bottleneck.`` ->
``embedding.``); everything else, ``downsample.0/1`` included, keeps its name.

Padding: ResNet2d zeroes padded frames before every convolution; SimAM's mean and variance and
the pooling's softmax use the valid frames only, so **a padded batch equals each utterance
alone** (eval mode). Without autograd the trunk runs ResNet2d's inference path: channels-last
convolutions with each BatchNorm folded in, in-place ReLU, residual and SimAM.
"""

from __future__ import annotations

from typing import Mapping

import torch

from r2n_audio.models.registry import build, register_model
from r2n_audio.models.res2net2d import ResNet2d

__all__ = ["upstream_key_map"]

_RENAMES = (("front.", ""), ("pooling.", "pool."), ("bottleneck.", "embedding."))


def upstream_key_map(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """WeSpeaker ``SimAM_ResNet*_ASP`` state_dict -> ours (``projection.*`` heads dropped)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("projection."):
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _simam(overrides: dict, **defaults) -> ResNet2d:
    return build(ResNet2d, {"block": "simam_basic", "stem": "speech", "base_channels": 64, "pooling": "asp",
                            **defaults}, overrides)


@register_model
def simam_resnet34(**overrides) -> ResNet2d:
    """WeSpeaker ``SimAM_ResNet34_ASP``: 25,213,760 parameters."""
    return _simam(overrides, layers=(3, 4, 6, 3))


@register_model
def simam_resnet100(**overrides) -> ResNet2d:
    """WeSpeaker ``SimAM_ResNet100_ASP``: 50,232,896 parameters."""
    return _simam(overrides, layers=(6, 16, 24, 3))


@register_model
def simam_resnet_tiny(**overrides) -> ResNet2d:
    """Tiny SimAM-ResNet (8 base channels, one block per stage, embedding 64): tests."""
    return _simam(overrides, layers=(1, 1, 1, 1), base_channels=8, embed_dim=64)
