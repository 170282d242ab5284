"""SimAM-ResNet against ``wespeaker/models/samresnet.py`` itself (wespeaker-unofficial, loaded by
file without the package ``__init__``).

Upstream weights, with every BatchNorm statistic and affine term randomised, load strictly into
ours through :func:`r2n_audio.models.simam_resnet.upstream_key_map`; embeddings agree for a
single utterance and, row by row, for a zero-padded batch. SimAM-ResNet100 runs one short
forward.
"""

from __future__ import annotations

import pytest
import torch

from r2n_audio.models import create_model
from r2n_audio.models.simam_resnet import upstream_key_map

SIZES = {"simam_resnet34": ("SimAM_ResNet34_ASP", 25_213_760),
         "simam_resnet100": ("SimAM_ResNet100_ASP", 50_232_896)}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _pair(name, wespeaker_module, randomize_batchnorm):
    torch.manual_seed(0)
    upstream = randomize_batchnorm(getattr(wespeaker_module("samresnet"), SIZES[name][0])())
    ours = create_model(name).eval()
    assert _count(ours) == _count(upstream) == SIZES[name][1]
    ours.load_state_dict(upstream_key_map(upstream.state_dict()), strict=True)
    return ours, upstream


@pytest.mark.parametrize("name", list(SIZES))
def test_wespeaker_weights_load_strictly_and_match(name, wespeaker_module, randomize_batchnorm):
    ours, upstream = _pair(name, wespeaker_module, randomize_batchnorm)
    x = torch.randn(1, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), upstream(x), atol=1e-5, rtol=1e-5)


def test_padded_batch_rows_equal_upstream_alone(wespeaker_module, randomize_batchnorm, pad_batch):
    ours, upstream = _pair("simam_resnet34", wespeaker_module, randomize_batchnorm)
    torch.manual_seed(1)
    utts = [torch.randn(n, 80) for n in (83, 50)]
    batch, lengths = pad_batch(utts)
    with torch.no_grad():
        expected = torch.cat([upstream(u[None]) for u in utts])
        torch.testing.assert_close(ours(batch, lengths), expected, atol=1e-5, rtol=1e-5)


def test_key_map_drops_the_training_head_and_renames_the_rest():
    state = {"front.layer1.0.downsample.0.weight": 1, "pooling.attention.2.running_mean": 2,
             "bottleneck.weight": 3, "projection.weight": 4, "front.conv1.weight": 5}
    assert upstream_key_map(state) == {"layer1.0.downsample.0.weight": 1, "pool.attention.2.running_mean": 2,
                                       "embedding.weight": 3, "conv1.weight": 5}
