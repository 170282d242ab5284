"""CAM++ against the upstream modules themselves: 3D-Speaker's
``speakerlab.models.campplus.DTDNN.CAMPPlus`` and WeSpeaker's ``wespeaker/models/campplus.py``.

Upstream weights, with every BatchNorm statistic and affine term randomised, load strictly into
ours; embeddings agree for single utterances and, row by row, for a zero-padded batch. Inputs
of 250-450 frames give two to three 100-frame context segments after the stride-2 TDNN, with
the padding cutting a segment.
"""

from __future__ import annotations

import pytest
import torch

from r2n_audio.models import create_model


@pytest.fixture(scope="module")
def speakerlab_campplus():
    try:
        from speakerlab.models.campplus.DTDNN import CAMPPlus
    except ImportError as exc:  # a skip fails under CI (tests/conftest.py)
        pytest.skip(f"speakerlab is needed for the 3D-Speaker parity tests: {exc}")
    return CAMPPlus


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _assert_parity(ours, upstream, pad_batch, lengths=(437, 250, 173)) -> None:
    torch.manual_seed(1)
    utts = [torch.randn(n, 80) for n in lengths]
    batch, lens = pad_batch(utts)
    with torch.no_grad():
        expected = torch.cat([upstream(u[None]) for u in utts])
        torch.testing.assert_close(ours(utts[0][None]), expected[:1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(batch, lens), expected, atol=1e-5, rtol=1e-5)


def test_3dspeaker_campplus_one_to_one(speakerlab_campplus, randomize_batchnorm, pad_batch):
    torch.manual_seed(0)
    upstream = randomize_batchnorm(speakerlab_campplus(feat_dim=80, embedding_size=192))
    ours = create_model("campplus").eval()
    assert _count(ours) == _count(upstream) == 6_848_544
    ours.load_state_dict(upstream.state_dict(), strict=True)
    _assert_parity(ours, upstream, pad_batch)


def test_3dspeaker_campplus_512_is_the_same_class(speakerlab_campplus, randomize_batchnorm):
    torch.manual_seed(0)
    upstream = randomize_batchnorm(speakerlab_campplus(feat_dim=80, embedding_size=512))
    ours = create_model("campplus", embed_dim=512).eval()
    ours.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(1, 230, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), upstream(x), atol=1e-5, rtol=1e-5)


def test_wespeaker_campplus_one_to_one(wespeaker_module, randomize_batchnorm, pad_batch):
    torch.manual_seed(0)
    upstream = wespeaker_module("campplus").CAMPPlus(feat_dim=80, embed_dim=512, pooling_func="TSTP")
    upstream = randomize_batchnorm(upstream)
    ours = create_model("campplus_e512").eval()
    assert _count(ours) == _count(upstream) == 7_176_224
    ours.load_state_dict(upstream.state_dict(), strict=True)
    _assert_parity(ours, upstream, pad_batch, lengths=(301, 120))


def test_training_layout_equals_inference_layout(randomize_batchnorm, pad_batch):
    # with autograd on, the head runs channels-first and the dense blocks concatenate; without
    # it, channels-last and one preallocated buffer: both must give the same embeddings
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model("campplus_tiny"))
    batch, lengths = pad_batch([torch.randn(n, 80) for n in (90, 57)])
    with torch.no_grad():
        fast = model(batch, lengths)
    torch.testing.assert_close(model(batch, lengths).detach(), fast, atol=1e-5, rtol=1e-5)


def test_full_lengths_take_the_unmasked_path_with_the_same_result(randomize_batchnorm):
    model = randomize_batchnorm(create_model("campplus_tiny"))
    x = torch.randn(2, 77, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor([77, 77])), model(x), atol=0, rtol=0)
