"""ECAPA-TDNN against SpeechBrain 1.1.2's ECAPA_TDNN (the reference implementation)."""

from __future__ import annotations

import pytest
import torch

from r2n_audio.errors import ModelError
from r2n_audio.models import create_model

ecapa_sb = pytest.importorskip("speechbrain.lobes.models.ECAPA_TDNN")

SIZES = {
    "ecapa_tdnn_c512": ([512] * 4 + [1536], 6_194_048),
    "ecapa_tdnn_c1024": ([1024] * 4 + [1536], 14_660_416),
    "ecapa_tdnn_c1024_mfa3072": ([1024] * 4 + [3072], 20_767_552),
}


def _randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so eval-mode outputs test every BN."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=g))


def _pair(name: str):
    channels, _ = SIZES[name]
    torch.manual_seed(0)
    reference = ecapa_sb.ECAPA_TDNN(80, channels=channels, lin_neurons=192)
    _randomise_batchnorm(reference)
    ours = create_model(name)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()


@pytest.mark.parametrize("name", list(SIZES))
def test_parameter_count_and_keys_match_speechbrain(name):
    channels, count = SIZES[name]
    reference = ecapa_sb.ECAPA_TDNN(80, channels=channels, lin_neurons=192)
    ours = create_model(name)
    assert sum(p.numel() for p in reference.parameters()) == count
    assert sum(p.numel() for p in ours.parameters()) == count
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert len(ours.state_dict()) == 231


@pytest.mark.parametrize("frames", [5, 64, 201])
def test_same_output_as_speechbrain_at_batch_size_one(frames):
    reference, ours = _pair("ecapa_tdnn_c512")
    x = torch.randn(1, frames, 80)
    with torch.no_grad():
        expected = reference(x).squeeze(1)
        assert torch.allclose(ours(x), expected, atol=1e-5, rtol=0)
        assert torch.allclose(ours(x, torch.tensor([frames])), expected, atol=1e-5, rtol=0)


def test_padded_batch_equals_speechbrain_per_utterance():
    reference, ours = _pair("ecapa_tdnn_c512")
    lengths = [37, 120, 5, 119]
    utts = [torch.randn(1, n, 80) for n in lengths]
    batch = torch.zeros(len(lengths), max(lengths), 80)
    for i, u in enumerate(utts):
        batch[i, : u.size(1)] = u[0]
    with torch.no_grad():
        got = ours(batch, torch.tensor(lengths))
        for i, u in enumerate(utts):
            assert torch.allclose(got[i], reference(u)[0, 0], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_big_model_same_output_as_speechbrain():
    reference, ours = _pair("ecapa_tdnn_c1024_mfa3072")
    x = torch.randn(1, 150, 80)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x).squeeze(1), atol=1e-5, rtol=0)


def test_too_short_input_raises_a_clear_error():
    model = create_model("ecapa_tdnn_tiny").eval()
    with pytest.raises(ModelError, match="at least 5"):
        model(torch.randn(1, 4, 80))
    with pytest.raises(ModelError, match="at least 5"):
        model(torch.randn(2, 40, 80), torch.tensor([40, 3]))


def test_bad_lengths_raise():
    model = create_model("ecapa_tdnn_tiny").eval()
    with pytest.raises(ModelError, match="exceeds"):
        model(torch.randn(2, 40, 80), torch.tensor([41, 40]))
    with pytest.raises(ModelError, match="relative"):
        model(torch.randn(2, 40, 80), torch.tensor([1.0, 0.5]))
