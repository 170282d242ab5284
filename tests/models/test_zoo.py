"""One parametrised test over every registered speaker backbone (timm's test_models shape).

Tiny and small models run by default; full-size ones under ``slow``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from r2n_audio.models import create_model, list_models

FAST = {name for name in list_models() if name.endswith("_tiny")} | {"ecapa_tdnn_c128"}
pytestmark = pytest.mark.filterwarnings(
    "ignore::torch.jit.TracerWarning", "ignore::UserWarning", "ignore::DeprecationWarning"
)

MODELS = [
    pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in list_models()
]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    torch.manual_seed(0)
    return create_model(request.param)


def test_forward_shape_finite_and_attributes(model):
    model.eval()
    out = model(torch.randn(2, 200, 80))
    assert out.shape == (2, model.embed_dim) and torch.isfinite(out).all()
    assert model.feat_dim == 80
    assert torch.isfinite(model.forward_frames(torch.randn(2, 50, 80))).all()


def test_odd_lengths(model, pad_batch):
    model.eval()
    batch, lengths = pad_batch([torch.randn(n, 80) for n in (97, 61, 33)])
    out = model(batch, lengths)
    assert out.shape == (3, model.embed_dim) and torch.isfinite(out).all()


def test_backward_reaches_every_parameter(model, pad_batch):
    model.train()
    model.zero_grad()
    batch, lengths = pad_batch([torch.randn(n, 80) for n in (64, 49)])
    model(batch, lengths).pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    model.zero_grad(set_to_none=True)


def test_eval_is_deterministic(model):
    model.eval()
    x = torch.randn(2, 80, 80)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_padded_batch_equals_each_utterance_alone(model, pad_batch):
    model.eval()
    utts = [torch.randn(n, 80) for n in (71, 120, 38)]
    batch, lengths = pad_batch(utts)
    with torch.no_grad():
        got = model(batch, lengths)
        for i, u in enumerate(utts):
            alone = model(u.unsqueeze(0))[0]
            assert torch.allclose(got[i], alone, atol=1e-5, rtol=1e-5), (i, (got[i] - alone).abs().max())


def test_onnx_export_matches_eager(model, pad_batch):
    ort = pytest.importorskip("onnxruntime")
    model.eval()
    batch, lengths = pad_batch([torch.randn(n, 80) for n in (90, 67)])
    buffer = io.BytesIO()
    torch.onnx.export(model, (batch, lengths), buffer, dynamo=False, input_names=["feats", "lengths"])
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"feats": batch.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        expected = model(batch, lengths).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("example", [(90, 67), (80, 80)], ids=["padded", "unpadded"])
def test_torchscript_trace_generalises_to_other_shapes(model, pad_batch, example):
    """Traced on a padded batch, or on one with no padding (where eager skips its masks),
    the trace must still mask the padded batch it is given later."""
    model.eval()
    batch, lengths = pad_batch([torch.randn(n, 80) for n in example])
    traced = torch.jit.trace(model, (batch, lengths))
    other, other_lengths = pad_batch([torch.randn(n, 80) for n in (120, 50, 99)])
    with torch.no_grad():
        torch.testing.assert_close(traced(other, other_lengths), model(other, other_lengths), atol=1e-4, rtol=1e-4)
