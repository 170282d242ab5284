"""Registered 2-D Res2Net models (the trunk and blocks live in :mod:`res2net2d`).

Parameter counts are for ``create_model(name, in_channels=3, num_classes=1000)`` (ImageNet,
equal to the official code's) unless marked "speaker" (defaults: 80 fbank bins, embedding 256).
"""

from __future__ import annotations

from r2n_audio.models.registry import build, register_model
from r2n_audio.models.res2net2d import ResNet2d

__all__: list[str] = []

_R50, _R101, _R34 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 4, 6, 3)
_V1B = dict(stem="deep", avg_down=True)
_SPEECH = dict(stem="speech", base_channels=32, layers=_R34)


def _net(overrides: dict, **defaults) -> ResNet2d:
    return build(ResNet2d, defaults, overrides)


@register_model
def res2net50_48w_2s(**overrides) -> ResNet2d:
    """Res2Net-50 48w x 2s: 25,287,304 parameters (ImageNet)."""
    return _net(overrides, layers=_R50, base_width=48, scale=2)


@register_model
def res2net50_26w_4s(**overrides) -> ResNet2d:
    """Res2Net-50 26w x 4s: 25,699,120 parameters (ImageNet)."""
    return _net(overrides, layers=_R50, base_width=26, scale=4)


@register_model
def res2net50_14w_8s(**overrides) -> ResNet2d:
    """Res2Net-50 14w x 8s: 25,059,816 parameters (ImageNet)."""
    return _net(overrides, layers=_R50, base_width=14, scale=8)


@register_model
def res2net50_26w_6s(**overrides) -> ResNet2d:
    """Res2Net-50 26w x 6s: 37,051,448 parameters (ImageNet)."""
    return _net(overrides, layers=_R50, base_width=26, scale=6)


@register_model
def res2net50_26w_8s(**overrides) -> ResNet2d:
    """Res2Net-50 26w x 8s: 48,403,776 parameters (ImageNet)."""
    return _net(overrides, layers=_R50, base_width=26, scale=8)


@register_model
def res2net101_26w_4s(**overrides) -> ResNet2d:
    """Res2Net-101 26w x 4s: 45,206,688 parameters (ImageNet)."""
    return _net(overrides, layers=_R101, base_width=26, scale=4)


@register_model
def res2next50(**overrides) -> ResNet2d:
    """Res2NeXt-50 (4w x 8 groups x 4s): 24,671,464 parameters (ImageNet)."""
    return _net(overrides, layers=_R50, base_width=4, cardinality=8, scale=4)


@register_model
def res2net50_v1b_26w_4s(**overrides) -> ResNet2d:
    """Res2Net-50-v1b 26w x 4s (timm ``res2net50d``): 25,718,352 parameters (ImageNet)."""
    return _net(overrides, layers=_R50, base_width=26, scale=4, **_V1B)


@register_model
def res2net101_v1b_26w_4s(**overrides) -> ResNet2d:
    """Res2Net-101-v1b 26w x 4s (timm ``res2net101d``): 45,225,920 parameters (ImageNet)."""
    return _net(overrides, layers=_R101, base_width=26, scale=4, **_V1B)


@register_model
def se_res2net50_26w_4s(**overrides) -> ResNet2d:
    """SE-Res2Net-50 26w x 4s (SE, reduction 16, after each block's last BN; timm's SEModule)."""
    return _net(overrides, layers=_R50, base_width=26, scale=4, se=True)


@register_model
def resnet34(**overrides) -> ResNet2d:
    """WeSpeaker's ResNet34 speaker model (32 base channels, stride-1 3x3 stem): 6,634,336
    parameters (speaker)."""
    return _net(overrides, block="basic", **_SPEECH)


def _bottleneck(overrides: dict, layers: tuple[int, ...], **defaults) -> ResNet2d:
    # WeSpeaker's speaker Bottleneck (1x1 -> 3x3 (stride) -> 1x1 x4) is a Bottle2neck at scale 1
    # and width 64: one 3x3 "split" (``convs.0`` / ``bns.0`` for WeSpeaker's ``conv2`` / ``bn2``).
    return _net(overrides, **{**_SPEECH, "layers": layers, "base_width": 64, "scale": 1, **defaults})


@register_model
def resnet152(**overrides) -> ResNet2d:
    """WeSpeaker's ResNet152 speaker model (bottleneck blocks [3, 8, 36, 3]): 19,814,880
    parameters (speaker)."""
    return _bottleneck(overrides, (3, 8, 36, 3))


@register_model
def resnet221(**overrides) -> ResNet2d:
    """WeSpeaker's ResNet221 speaker model (bottleneck blocks [6, 16, 48, 3]): 23,792,224
    parameters (speaker)."""
    return _bottleneck(overrides, (6, 16, 48, 3))


@register_model
def resnet293(**overrides) -> ResNet2d:
    """WeSpeaker's ResNet293 speaker model (bottleneck blocks [10, 20, 64, 3]): 28,626,016
    parameters (speaker)."""
    return _bottleneck(overrides, (10, 20, 64, 3))


@register_model
def resnet_bottleneck_tiny(**overrides) -> ResNet2d:
    """Tiny layout of WeSpeaker's bottleneck ResNets (8 base channels, one block per stage) for
    tests (speaker)."""
    return _bottleneck(overrides, (1, 1, 1, 1), base_channels=8, embed_dim=64)


@register_model
def res2net34_w32_s2(**overrides) -> ResNet2d:
    """WeSpeaker's Res2Net34_Base (scale 2): 4,689,024 parameters (speaker). Its weights map one
    to one; WeSpeaker's activation there is Hardtanh(0, 20), ours ReLU."""
    return _net(overrides, block="basic_res2", base_width=32, scale=2, **_SPEECH)


@register_model
def res2net34_w32_s4(**overrides) -> ResNet2d:
    """Res2Net-34, 32 base channels, scale 4: 7,281,664 parameters (speaker)."""
    return _net(overrides, block="basic_res2", base_width=32, scale=4, **_SPEECH)


@register_model
def res2net34_w32_s8(**overrides) -> ResNet2d:
    """Res2Net-34, 32 base channels, scale 8: 12,466,944 parameters (speaker)."""
    return _net(overrides, block="basic_res2", base_width=32, scale=8, **_SPEECH)


@register_model
def res2net34_w64_s4(**overrides) -> ResNet2d:
    """Res2Net-34, 64 base channels, scale 4: 23,836,928 parameters (speaker)."""
    return _net(overrides, block="basic_res2", base_width=32, scale=4, **{**_SPEECH, "base_channels": 64})


@register_model
def resnet34_tiny(**overrides) -> ResNet2d:
    """Tiny ResNet-34 layout (8 base channels, one block per stage) for tests (speaker)."""
    return _net(overrides, block="basic", **{**_SPEECH, "base_channels": 8, "layers": (1, 1, 1, 1)}, embed_dim=64)


@register_model
def res2net34_tiny(**overrides) -> ResNet2d:
    """Tiny Res2Net-34 layout (8 base channels, scale 4, one block per stage) for tests."""
    return _net(overrides, block="basic_res2", base_width=32, scale=4,
                **{**_SPEECH, "base_channels": 8, "layers": (1, 1, 1, 1)}, embed_dim=64)


@register_model
def res2net50_tiny(**overrides) -> ResNet2d:
    """Tiny Bottle2neck trunk for tests: v1b stem and shortcuts, 2 groups, SE (speaker)."""
    return _net(overrides, layers=(1, 1, 1, 1), base_channels=16, base_width=26, scale=4,
                cardinality=2, se=True, embed_dim=64, **_V1B)
