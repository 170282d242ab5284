"""ERes2Net / ERes2NetV2 against the upstream modules themselves.

References: 3D-Speaker's ``speakerlab.models.eres2net`` (``ERes2Net``, ``ERes2Net_huge``,
``ERes2NetV2``; speakerlab on PyPI) and WeSpeaker's ``wespeaker/models/eres2net.py``
(wespeaker-unofficial), loaded from its file without running the package ``__init__``, which
pulls WeSpeaker's CLI (the ``wespeaker_module`` fixture). Upstream weights, with every
BatchNorm statistic and affine term randomised, load strictly into ours; embeddings agree at
batch size 1 and for a padded batch (each row against upstream on that utterance alone).
Full-size forwards beyond the most used models are ``slow``.
"""

from __future__ import annotations

import importlib
import types

import pytest
import torch
import torch.nn as nn

from r2n_audio.models import create_model
from r2n_audio.models.eres2net import upstream_key_map

# documented upstream counts (REFERENCE.md, model docstrings); each is also recounted live
COUNTS = {
    "eres2net_base": 6_610_688, "eres2net_large": 22_462_784, "eres2net_huge": 55_165_024,
    "eres2netv2": 17_859_632, "eres2netv2_w24_s4_ep4": 53_513_632,
    "eres2net34_base": 6_610_688, "eres2net34_large": 22_462_784, "eres2net34_aug": 55_165_024,
}


@pytest.fixture(scope="module")
def speakerlab():
    """3D-Speaker's three model modules."""
    try:
        return types.SimpleNamespace(
            v1=importlib.import_module("speakerlab.models.eres2net.ERes2Net"),
            huge=importlib.import_module("speakerlab.models.eres2net.ERes2Net_huge"),
            v2=importlib.import_module("speakerlab.models.eres2net.ERes2NetV2"),
        )
    except ImportError as exc:  # a skip fails under CI (tests/conftest.py)
        pytest.skip(f"speakerlab is needed for the 3D-Speaker parity tests: {exc}")


@pytest.fixture(scope="module")
def wespeaker(wespeaker_module):
    """``wespeaker/models/eres2net.py``, loaded by file (tests/models/conftest.py)."""
    return wespeaker_module("eres2net")


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise(model: nn.Module) -> nn.Module:
    """Every BatchNorm's running statistics and affine terms random (so folding and layout
    mistakes show), biases random; eval mode. BN gains reach 2.5 (conftest's randomiser stays
    near 1), so that with :func:`_padded`'s inputs activations pass the clip at 20."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + 2.0 * torch.rand(m.num_features, generator=g))
                    m.bias.copy_(0.3 * torch.randn(m.num_features, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def _padded(lengths: list[int], feat_dim: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    batch = torch.zeros(len(lengths), max(lengths), feat_dim)
    for i, n in enumerate(lengths):  # fbank-like spread, so activations do reach the clip at 20
        batch[i, :n] = 8 * torch.randn(n, feat_dim, generator=g)
    return batch, torch.tensor(lengths)


def _assert_same_embeddings(ours: nn.Module, reference: nn.Module, lengths: list[int]) -> None:
    """Ours on a padded batch equals upstream on each utterance alone; ours at B=1 too.

    Tolerance 1e-5 of the embedding's largest element: with these weights embeddings reach ~10
    and upstream itself is ~1e-5 off its own float64 result, ours the same.
    """
    batch, lens = _padded(lengths, ours.feat_dim)
    with torch.no_grad():
        got = ours(batch, lens)
        for i, n in enumerate(lengths):
            utt = batch[i : i + 1, :n]
            expected = reference(utt.clone())  # upstream unsqueezes its input in place
            atol = 1e-5 * max(1.0, float(expected.abs().max()))
            torch.testing.assert_close(got[i : i + 1], expected, atol=atol, rtol=1e-5)
            torch.testing.assert_close(ours(utt), expected, atol=atol, rtol=1e-5)


def _port(reference: nn.Module, name: str, source: str = "3dspeaker", **overrides) -> nn.Module:
    """Ours built as ``name`` with ``overrides``, loaded strictly from ``reference``."""
    _randomise(reference)
    ours = create_model(name, **overrides).eval()
    state = reference.state_dict()
    mapping = upstream_key_map(state, source)
    ours.load_state_dict({mapping[k]: v for k, v in state.items()}, strict=True)
    assert _count(ours) == _count(reference)
    return ours


# -- 3D-Speaker ---------------------------------------------------------------------------------

def test_3dspeaker_eres2net_small_configuration(speakerlab):
    reference = speakerlab.v1.ERes2Net(num_blocks=[1, 2, 2, 1], m_channels=8, feat_dim=40, embedding_size=32)
    ours = _port(reference, "eres2net_base", m_channels=8, num_blocks=(1, 2, 2, 1), feat_dim=40, embed_dim=32)
    _assert_same_embeddings(ours, reference, [61, 37, 48])


def test_3dspeaker_eres2net_huge_layout_small(speakerlab):
    # width 24, scale 3, expansion 4: the AFF chain inside a block runs twice
    reference = speakerlab.huge.ERes2Net(num_blocks=[1, 1, 2, 1], m_channels=8, feat_dim=40, embedding_size=32)
    ours = _port(reference, "eres2net_huge", m_channels=8, num_blocks=(1, 1, 2, 1), feat_dim=40, embed_dim=32)
    _assert_same_embeddings(ours, reference, [45, 30])


@pytest.mark.parametrize("width, scale, expansion", [(26, 2, 2), (24, 4, 4)])
def test_3dspeaker_eres2netv2_small_configurations(speakerlab, width, scale, expansion):
    reference = speakerlab.v2.ERes2NetV2(num_blocks=[1, 1, 2, 1], m_channels=8, feat_dim=40, embedding_size=32,
                                         baseWidth=width, scale=scale, expansion=expansion)
    ours = _port(reference, "eres2netv2", m_channels=8, num_blocks=(1, 1, 2, 1), feat_dim=40, embed_dim=32,
                 base_width=width, scale=scale, expansion=expansion)
    _assert_same_embeddings(ours, reference, [53, 29])


def test_3dspeaker_two_embedding_layers(speakerlab):
    reference = speakerlab.v2.ERes2NetV2(num_blocks=[1, 1, 1, 1], m_channels=8, feat_dim=40, embedding_size=32,
                                         two_emb_layer=True)
    ours = _port(reference, "eres2netv2", m_channels=8, num_blocks=(1, 1, 1, 1), feat_dim=40, embed_dim=32,
                 two_emb_layer=True)
    _assert_same_embeddings(ours, reference, [40, 25])


def test_3dspeaker_full_size_eres2net_base(speakerlab):
    reference = speakerlab.v1.ERes2Net(feat_dim=80, embedding_size=192)
    _assert_same_embeddings(_port(reference, "eres2net_base"), reference, [40, 27])


def test_3dspeaker_full_size_eres2netv2(speakerlab):
    reference = speakerlab.v2.ERes2NetV2(feat_dim=80, embedding_size=192, baseWidth=26, scale=2, expansion=2)
    _assert_same_embeddings(_port(reference, "eres2netv2"), reference, [40, 27])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["eres2net_large", "eres2net_huge", "eres2netv2_w24_s4_ep4"])
def test_3dspeaker_full_size_slow(speakerlab, name):
    reference = {
        "eres2net_large": lambda: speakerlab.v1.ERes2Net(feat_dim=80, embedding_size=192, m_channels=64),
        "eres2net_huge": lambda: speakerlab.huge.ERes2Net(feat_dim=80, embedding_size=192),
        "eres2netv2_w24_s4_ep4": lambda: speakerlab.v2.ERes2NetV2(feat_dim=80, embedding_size=192, baseWidth=24,
                                                                  scale=4, expansion=4),
    }[name]()
    _assert_same_embeddings(_port(reference, name), reference, [40, 27])


def test_3dspeaker_parameter_counts(speakerlab):
    references = {
        "eres2net_base": lambda: speakerlab.v1.ERes2Net(feat_dim=80, embedding_size=192),
        "eres2net_large": lambda: speakerlab.v1.ERes2Net(feat_dim=80, embedding_size=192, m_channels=64),
        "eres2net_huge": lambda: speakerlab.huge.ERes2Net(feat_dim=80, embedding_size=192),
        "eres2netv2": lambda: speakerlab.v2.ERes2NetV2(feat_dim=80, embedding_size=192),
        "eres2netv2_w24_s4_ep4": lambda: speakerlab.v2.ERes2NetV2(feat_dim=80, embedding_size=192, baseWidth=24,
                                                                  scale=4, expansion=4),
    }
    for name, make in references.items():
        assert _count(create_model(name)) == _count(make()) == COUNTS[name], name


def test_3dspeaker_eval_mode_input_gradients(speakerlab):
    """Eval mode takes the fast path (folded BN, in-place work); autograd through it must still
    give upstream's gradients (saliency, adversarial checks)."""
    reference = speakerlab.v1.ERes2Net(num_blocks=[1, 2, 2, 1], m_channels=8, feat_dim=40, embedding_size=32)
    ours = _port(reference, "eres2net_base", m_channels=8, num_blocks=(1, 2, 2, 1), feat_dim=40, embed_dim=32)
    x = _padded([50], 40)[0]
    grads = []
    for model in (ours, reference):
        leaf = x.clone().requires_grad_()
        model(leaf.clone()).pow(2).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5 * float(grads[1].abs().max()), rtol=1e-5)


# -- WeSpeaker ----------------------------------------------------------------------------------

def test_wespeaker_eres2net_small_configuration(wespeaker):
    # scale 3: the fusion blocks' conv2_1 + convs.0-1 renaming is exercised beyond index 0
    reference = wespeaker.ERes2Net(8, [1, 1, 2, 1], baseWidth=32, scale=3, expansion=2, feat_dim=40, embed_dim=32)
    assert any(".conv2_1." in k for k in reference.state_dict())
    ours = _port(reference, "eres2net34_base", "wespeaker", m_channels=8, num_blocks=(1, 1, 2, 1), scale=3,
                 feat_dim=40, embed_dim=32)
    _assert_same_embeddings(ours, reference, [50, 33, 21])


def test_wespeaker_full_size_eres2net34_base(wespeaker):
    reference = wespeaker.ERes2Net34_Base(feat_dim=80, embed_dim=192, pooling_func="TSTP", two_emb_layer=False)
    _assert_same_embeddings(_port(reference, "eres2net34_base", "wespeaker"), reference, [40, 27])


@pytest.mark.slow
@pytest.mark.parametrize("name, factory", [("eres2net34_large", "ERes2Net34_Large"),
                                           ("eres2net34_aug", "ERes2Net34_aug")])
def test_wespeaker_full_size_slow(wespeaker, name, factory):
    reference = getattr(wespeaker, factory)(feat_dim=80, embed_dim=192, pooling_func="TSTP", two_emb_layer=False)
    _assert_same_embeddings(_port(reference, name, "wespeaker"), reference, [40, 27])


def test_wespeaker_parameter_counts(wespeaker):
    for name, factory in (("eres2net34_base", "ERes2Net34_Base"), ("eres2net34_large", "ERes2Net34_Large"),
                          ("eres2net34_aug", "ERes2Net34_aug")):
        reference = getattr(wespeaker, factory)(feat_dim=80, embed_dim=192, pooling_func="TSTP", two_emb_layer=False)
        assert _count(create_model(name)) == _count(reference) == COUNTS[name], name


# -- what the parity rests on -------------------------------------------------------------------

def test_activations_do_reach_the_clip(speakerlab):
    """The parity inputs drive some block activations past 20, so the Hardtanh(0, 20) clip is
    really compared (a plain ReLU would fail the tests above)."""
    reference = _randomise(speakerlab.v1.ERes2Net(num_blocks=[1, 2, 2, 1], m_channels=8, feat_dim=40,
                                                  embedding_size=32))
    peaks = []
    hooks = [m.register_forward_pre_hook(lambda m, i: peaks.append(float(i[0].max())))  # before the in-place clip
             for m in reference.modules() if type(m).__name__ == "ReLU"]
    with torch.no_grad():
        reference(_padded([61], 40)[0])
    for hook in hooks:
        hook.remove()
    assert max(peaks) > 20, max(peaks)


def test_unknown_pooling_and_key_source_are_refused():
    from r2n_audio.errors import ModelError

    with pytest.raises(ModelError, match="TSTP"):
        create_model("eres2net_tiny", pooling_func="ASTP")
    with pytest.raises(ModelError, match="wespeaker"):
        upstream_key_map(["conv1.weight"], "kaldi")
