"""Margin losses against numpy references and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from r2n_audio.losses import AAMSoftmax, AMSoftmax, CosineHead, build_loss


def _np_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def _speechbrain_aam(margin: float, scale: float, easy_margin: bool = False):
    """SpeechBrain's AdditiveAngularMargin and its log-softmax cross-entropy, the reference."""
    losses = pytest.importorskip("speechbrain.nnet.losses")
    aam = losses.AdditiveAngularMargin(margin=margin, scale=scale, easy_margin=easy_margin)
    return aam, losses.LogSoftmaxWrapper(aam)


@pytest.fixture
def cos_labels(rng):
    cos = rng.uniform(-0.9, 0.9, size=(6, 10))
    labels = rng.integers(0, 10, size=6)
    return cos, labels


def test_aam_margin_zero_equals_cross_entropy_on_scaled_cosines(cos_labels):
    cos, labels = cos_labels
    loss = AAMSoftmax(scale=30.0, margin=0.0)
    got = loss(torch.tensor(cos), torch.tensor(labels)).item()
    assert got == pytest.approx(_np_cross_entropy(30.0 * cos, labels), rel=1e-10)


@pytest.mark.parametrize("m,easy", [(0.1, False), (0.2, False), (0.5, False), (0.2, True)])
def test_aam_matches_speechbrain(rng, m, easy):
    # Cosines over the whole range, so the branch past theta = pi - m is exercised too.
    cos = torch.tensor(rng.uniform(-0.999, 0.999, size=(16, 10)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 10, size=16))
    aam, wrapped = _speechbrain_aam(m, 30.0, easy)
    ours = AAMSoftmax(scale=30.0, margin=m, easy_margin=easy)
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    torch.testing.assert_close(ours.logits(cos, labels), aam(cos, one_hot), rtol=1e-5, atol=1e-4)
    expected = wrapped(cos.unsqueeze(1), labels.unsqueeze(1))
    torch.testing.assert_close(ours(cos, labels), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_head_and_loss_are_fp32_under_bf16_autocast(rng):
    head, loss = CosineHead(64, 50), AAMSoftmax(scale=32.0, margin=0.2)
    emb = torch.tensor(rng.standard_normal((8, 64)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 50, size=8))
    ref_logits, ref_loss = loss.logits(head(emb), labels), loss(head(emb), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos = head(emb)
        logits, value = loss.logits(cos, labels), loss(cos, labels)
    assert cos.dtype == logits.dtype == value.dtype == torch.float32
    # In bf16 the logits would be off by up to ~0.06 (steps of 2^-8 times the scale).
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(value, ref_loss, rtol=0, atol=1e-6)


def test_aam_past_pi_stays_monotone():
    # theta + m > pi: target logit continues as cos - m sin(m), decreasing in theta.
    m = 0.5
    cos = torch.tensor([[-0.99, 0.0], [-0.999, 0.0]], dtype=torch.float64)
    out = AAMSoftmax(scale=1.0, margin=m).logits(cos, torch.tensor([0, 0]))[:, 0]
    expected = cos[:, 0] - math.sin(math.pi - m) * m
    torch.testing.assert_close(out, expected)
    assert out[0] > out[1]


def test_easy_margin_leaves_negative_cosines():
    cos = torch.tensor([[-0.3, 0.1], [0.6, 0.2]], dtype=torch.float64)
    out = AAMSoftmax(scale=1.0, margin=0.2, easy_margin=True).logits(cos, torch.tensor([0, 0]))
    assert out[0, 0].item() == pytest.approx(-0.3)
    assert out[1, 0].item() == pytest.approx(math.cos(math.acos(0.6) + 0.2))


@pytest.mark.parametrize("loss", [AAMSoftmax(margin=0.2), AAMSoftmax(margin=0.2, easy_margin=True),
                                  AAMSoftmax(margin=0.2, inter_topk=2), AMSoftmax(margin=0.2)])
def test_gradients_finite_at_plus_minus_one(loss):
    cos = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.5]], requires_grad=True)
    value = loss(cos, torch.tensor([0, 0]))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(cos.grad).all()


def test_gradients_finite_through_head_when_embedding_equals_centre():
    head = CosineHead(4, 3)
    emb = head.weight.detach()[:2].clone().requires_grad_(True)  # cosine exactly 1 (and rounding)
    loss = AAMSoftmax(margin=0.3)(head(emb), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


def test_am_softmax_reference(cos_labels):
    cos, labels = cos_labels
    ref = cos.copy()
    ref[np.arange(len(labels)), labels] -= 0.25
    got = AMSoftmax(scale=20.0, margin=0.25)(torch.tensor(cos), torch.tensor(labels)).item()
    assert got == pytest.approx(_np_cross_entropy(20.0 * ref, labels))


def test_inter_topk_penalises_hardest_negatives():
    cos = torch.tensor([[0.5, 0.4, 0.3, -0.2]], dtype=torch.float64)
    mp = 0.1
    out = AAMSoftmax(scale=1.0, margin=0.0, inter_topk=2, inter_margin=mp).logits(
        cos, torch.tensor([0]))[0]
    expected = [0.5, math.cos(math.acos(0.4) - mp), math.cos(math.acos(0.3) - mp), -0.2]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9)


def test_set_margin_is_saved_in_state_dict():
    loss = AAMSoftmax(margin=0.0)
    loss.set_margin(0.2)
    fresh = AAMSoftmax(margin=0.0)
    fresh.load_state_dict(loss.state_dict())
    assert fresh.margin == pytest.approx(0.2)


def test_subcenter_head_takes_best_centre(rng):
    head = CosineHead(5, 3, num_subcenters=2)
    emb = torch.tensor(rng.standard_normal((4, 5)), dtype=torch.float32)
    w = torch.nn.functional.normalize(head.weight, dim=1).detach().numpy().reshape(3, 2, 5)
    e = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    expected = np.einsum("bd,ckd->bck", e, w).max(axis=2)
    np.testing.assert_allclose(head(emb).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_build_loss_rejects_unknown_name():
    assert isinstance(build_loss("subcenter_aam", margin=0.1), AAMSoftmax)
    with pytest.raises(ValueError, match="aam"):
        build_loss("arcface++")
