"""The registry: names, fnmatch listing, helpful errors, overrides."""

from __future__ import annotations

import pytest
import torch

from r2n_audio.errors import ModelError
from r2n_audio.models import create_model, list_models, register_model


def test_list_models_pattern_and_sorted():
    names = list_models()
    assert names == sorted(names)
    assert {"ecapa_tdnn_c512", "ecapa_tdnn_c1024", "ecapa_tdnn_c1024_mfa3072"} <= set(names)
    assert list_models("ecapa_tdnn_c1024*") == ["ecapa_tdnn_c1024", "ecapa_tdnn_c1024_mfa3072"]
    assert list_models("no_such_*") == []


def test_unknown_name_lists_close_matches_and_all_names():
    with pytest.raises(ModelError) as err:
        create_model("ecapa_tdnn_c521")
    message = str(err.value)
    assert "Did you mean: ecapa_tdnn_c512" in message
    assert all(name in message for name in list_models())


def test_unknown_override_names_accepted_arguments():
    with pytest.raises(ModelError, match="does not take widht.*accepts: feat_dim"):
        create_model("ecapa_tdnn_tiny", widht=3)


def test_feat_dim_and_embed_dim_overrides():
    model = create_model("ecapa_tdnn_tiny", feat_dim=40, embed_dim=24).eval()
    assert (model.feat_dim, model.embed_dim) == (40, 24)
    assert model(torch.randn(2, 50, 40)).shape == (2, 24)


def test_duplicate_registration_is_refused():
    def ecapa_tdnn_c512():  # same name as a registered model, different function
        raise AssertionError

    with pytest.raises(ValueError, match="registered twice"):
        register_model(ecapa_tdnn_c512)


@pytest.mark.parametrize("name", ["resnet34_tiny", "res2net_dla_tiny"])
def test_2d_feat_dim_and_embed_dim_overrides(name):
    model = create_model(name, feat_dim=40, embed_dim=32).eval()
    assert (model.feat_dim, model.embed_dim) == (40, 32)
    assert model(torch.randn(2, 50, 40), torch.tensor([50, 21])).shape == (2, 32)


def test_classifier_refuses_speaker_input_and_speaker_mode_refuses_rgb():
    with pytest.raises(ValueError, match="in_channels=1"):
        create_model("res2net50_tiny", in_channels=3)
    classifier = create_model("res2net50_tiny", in_channels=3, num_classes=10).eval()
    assert classifier(torch.randn(1, 3, 32, 32)).shape == (1, 10)
