"""2-D Res2Net family against timm's definitions, the official counts, and WeSpeaker's ResNet34."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from r2n_audio.models import create_model
from r2n_audio.models.res2net2d import Bottle2neck

timm = pytest.importorskip("timm")

# official code's ImageNet parameter counts (REFERENCE.md, section 1)
OFFICIAL = {
    "res2net50_48w_2s": 25_287_304, "res2net50_26w_4s": 25_699_120, "res2net50_14w_8s": 25_059_816,
    "res2net50_26w_6s": 37_051_448, "res2net50_26w_8s": 48_403_776, "res2net101_26w_4s": 45_206_688,
    "res2next50": 24_671_464, "res2net50_v1b_26w_4s": 25_718_352, "res2net101_v1b_26w_4s": 45_225_920,
    "res2net_dla60": 21_145_544, "res2next_dla60": 17_330_456,
}
# ours -> timm name; the DLA pair is compared without the official code's unused projections
TIMM = {
    "res2net50_26w_4s": "res2net50_26w_4s", "res2net50_48w_2s": "res2net50_48w_2s",
    "res2net50_14w_8s": "res2net50_14w_8s", "res2net50_26w_6s": "res2net50_26w_6s",
    "res2net50_26w_8s": "res2net50_26w_8s", "res2net101_26w_4s": "res2net101_26w_4s",
    "res2next50": "res2next50", "res2net50_v1b_26w_4s": "res2net50d", "res2net101_v1b_26w_4s": "res2net101d",
    "res2net_dla60": "dla60_res2net", "res2next_dla60": "dla60_res2next",
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_batchnorm(model: nn.Module) -> None:
    """Random running statistics *and* affine terms: timm zero-initialises each block's last
    BN weight, which would make every residual branch output 0 and the comparison vacuous."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.2 + 0.4 * torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_imagenet_parameter_count_is_official(name):
    assert _count(create_model(name, in_channels=3, num_classes=1000)) == OFFICIAL[name]


@pytest.mark.parametrize("name", list(TIMM))
def test_timm_weights_give_the_same_logits(name):
    torch.manual_seed(0)
    reference = timm.create_model(TIMM[name], pretrained=False).eval()
    _randomise_batchnorm(reference)
    extra = {"keep_unused": False} if "dla" in name else {}
    ours = create_model(name, in_channels=3, num_classes=1000, **extra).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # timm's names are the official ones
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_se_res2net_matches_timm_with_se_blocks():
    from timm.layers import get_attn
    from timm.models.res2net import Bottle2neck as TimmBottle2neck
    from timm.models.resnet import ResNet

    reference = ResNet(block=TimmBottle2neck, layers=[3, 4, 6, 3], base_width=26,
                       block_args=dict(scale=4, attn_layer=get_attn("se"))).eval()
    _randomise_batchnorm(reference)
    ours = create_model("se_res2net50_26w_4s", in_channels=3, num_classes=1000).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_split_width_rounds_down():
    # planes 48, base width 26: floor(48 * 26 / 64) = floor(19.5) = 19 (hand-worked)
    assert Bottle2neck(64, 48, base_width=26, scale=4).width == 19


def test_layer1_first_block_is_a_stage_block_with_stride_one_pool():
    block = create_model("res2net50_26w_4s", in_channels=3, num_classes=1000).layer1[0]
    assert isinstance(block.pool, nn.AvgPool2d) and block.pool.stride == 1


# --- WeSpeaker's ResNet34 (wespeaker/models/resnet.py, two_emb_layer=False), the reference
# layout a weight importer maps one to one: shortcut. -> downsample., seg_1. -> embedding.
class _WsBasicBlock(nn.Module):
    def __init__(self, inp: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class _WsResNet34(nn.Module):
    def __init__(self, m: int = 32, feat_dim: int = 80, embed_dim: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, m, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        inp = m
        for i, (n, s) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2))):
            blocks = []
            for j in range(n):
                blocks.append(_WsBasicBlock(inp, m * 2**i, s if j == 0 else 1))
                inp = m * 2**i
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.seg_1 = nn.Linear(int(feat_dim / 8) * m * 8 * 2, embed_dim)

    def forward(self, x):  # (B, T, F)
        out = F.relu(self.bn1(self.conv1(x.permute(0, 2, 1).unsqueeze(1))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out)))).flatten(1, 2)
        stats = torch.cat([out.mean(-1), torch.sqrt(torch.var(out, dim=-1) + 1e-7)], 1)
        return self.seg_1(stats)


def _assert_wespeaker_port(ours: nn.Module, reference: nn.Module, params: int) -> None:
    """Same parameter count, WeSpeaker's weights load strictly after the two renames, and the
    same embeddings on a random fbank batch."""
    assert _count(ours) == _count(reference) == params
    mapped = {k.replace("shortcut.", "downsample.").replace("seg_1.", "embedding."): v
              for k, v in reference.state_dict().items()}
    ours.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-4, rtol=1e-4)


def test_resnet34_is_wespeaker_resnet34_one_to_one():
    torch.manual_seed(0)
    reference = _WsResNet34().eval()
    _randomise_batchnorm(reference)
    _assert_wespeaker_port(create_model("resnet34").eval(), reference, 6_634_336)


# --- WeSpeaker's Res2Net34_Base (wespeaker/models/res2net.py: BasicBlockRes2Net, scale 2,
# base width 32, expansion 2). Its ReLU is Hardtanh(0, 20); inputs here stay far below 20.
class _WsBasicBlockRes2Net(nn.Module):
    def __init__(self, inp: int, planes: int, stride: int, scale: int = 2) -> None:
        super().__init__()
        width = planes * 32 // 64
        self.width, self.scale = width, scale
        self.conv1 = nn.Conv2d(inp, width * scale, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, 1, 1, bias=False) for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, planes * 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 2)
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != 2 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, 2 * planes, 1, stride, bias=False), nn.BatchNorm2d(2 * planes))

    def forward(self, x):
        spx = torch.split(F.hardtanh(self.bn1(self.conv1(x)), 0, 20), self.width, 1)
        outs, sp = [], spx[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = F.hardtanh(bn(conv(sp if i == 0 else sp + spx[i])), 0, 20)
            outs.append(sp)
        out = self.bn3(self.conv3(torch.cat(outs + [spx[-1]], 1)))
        return F.hardtanh(out + self.shortcut(x), 0, 20)


def test_res2net34_w32_s2_is_wespeaker_res2net34_base_one_to_one():
    torch.manual_seed(0)
    reference = _WsResNet34()
    inp = 32
    for i, (n, s) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2))):
        blocks = []
        for j in range(n):
            blocks.append(_WsBasicBlockRes2Net(inp, 32 * 2**i, s if j == 0 else 1))
            inp = 2 * 32 * 2**i
        setattr(reference, f"layer{i + 1}", nn.Sequential(*blocks))
    reference.seg_1 = nn.Linear(10 * 32 * 8 * 2 * 2, 256)
    reference.eval()
    _randomise_batchnorm(reference)
    _assert_wespeaker_port(create_model("res2net34_w32_s2").eval(), reference, 4_689_024)
