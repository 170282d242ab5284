"""WeSpeaker-layout ECAPA-TDNN against ``wespeaker/models/ecapa_tdnn.py`` itself
(wespeaker-unofficial, loaded by file without the package ``__init__``).

Upstream weights, every one random (convolutions and attention too: with default
initialisation the attention is nearly uniform and a wrong context statistic goes unseen), with
every BatchNorm statistic and affine term randomised, load strictly into ours; embeddings (WeSpeaker's second output) agree for single utterances and, row by row, for a
zero-padded batch. The C=1024 sizes run one short forward each.
"""

from __future__ import annotations

import pytest
import torch

from r2n_audio.models import create_model

from ..inference.upstream_models import randomize_all

# ours -> (WeSpeaker factory, parameters at feat 80 / embed 192 / ASTP)
SIZES = {
    "ecapa_tdnn_ws_c512": ("ECAPA_TDNN_c512", 5_797_504),
    "ecapa_tdnn_ws_c1024": ("ECAPA_TDNN_c1024", 14_263_872),
    "ecapa_tdnn_ws_glob_c512": ("ECAPA_TDNN_GLOB_c512", 6_190_720),
    "ecapa_tdnn_ws_glob_c1024": ("ECAPA_TDNN_GLOB_c1024", 14_657_088),
}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _upstream(wespeaker_module, randomize_batchnorm, name: str, **kwargs):
    torch.manual_seed(0)
    factory = getattr(wespeaker_module("ecapa_tdnn"), SIZES[name][0])
    return randomize_all(factory(feat_dim=80, embed_dim=192, pooling_func="ASTP", **kwargs))


@pytest.mark.parametrize("name", list(SIZES))
def test_wespeaker_weights_load_strictly_and_match(name, wespeaker_module, randomize_batchnorm):
    upstream = _upstream(wespeaker_module, randomize_batchnorm, name)
    ours = create_model(name).eval()
    assert _count(ours) == _count(upstream) == SIZES[name][1]
    ours.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(1, 120, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), upstream(x)[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["ecapa_tdnn_ws_c512", "ecapa_tdnn_ws_glob_c512"])
def test_padded_batch_rows_equal_upstream_alone(name, wespeaker_module, randomize_batchnorm, pad_batch):
    upstream = _upstream(wespeaker_module, randomize_batchnorm, name)
    ours = create_model(name).eval()
    ours.load_state_dict(upstream.state_dict(), strict=True)
    torch.manual_seed(1)
    utts = [torch.randn(n, 80) for n in (230, 151, 97)]
    batch, lengths = pad_batch(utts)
    with torch.no_grad():
        expected = torch.cat([upstream(u[None])[1] for u in utts])
        torch.testing.assert_close(ours(batch, lengths), expected, atol=1e-5, rtol=1e-5)


def test_embedding_batchnorm_option(wespeaker_module, randomize_batchnorm):
    upstream = _upstream(wespeaker_module, randomize_batchnorm, "ecapa_tdnn_ws_glob_c512", emb_bn=True)
    ours = create_model("ecapa_tdnn_ws_glob_c512", emb_bn=True).eval()
    ours.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(1, 90, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), upstream(x)[1], atol=1e-5, rtol=1e-5)


def test_full_lengths_take_the_unmasked_path_with_the_same_result(randomize_batchnorm):
    model = randomize_batchnorm(create_model("ecapa_tdnn_ws_tiny"))
    x = torch.randn(2, 77, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor([77, 77])), model(x), atol=0, rtol=0)
