"""``r2n-audio import wespeaker`` against WeSpeaker's own model code (``wespeaker-unofficial``).

For every WeSpeaker architecture in the zoo: the upstream network with random weights, BatchNorm
statistics and affine terms, saved as WeSpeaker publishes it (``config.yaml`` + ``avg_model.pt``
with the ``projection.*`` head), imported through the CLI, embedded with ``r2n-audio embed`` on real
speech and compared with WeSpeaker's own extraction (Kaldi fbank on samples * 2**15, hamming,
dither 0, CMN; ``embed_a``): 1 - cosine <= 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from r2n_audio.cli import main
from r2n_audio.data.embeddings import load_embeddings
from r2n_audio.errors import ModelError
from r2n_audio.inference.bundle import load_bundle
from r2n_audio.inference.importers import import_model

from .upstream_models import (cosine_gap, randomize_all, speech_crop, wespeaker_extract,
                              wespeaker_module)

TSTP = {"pooling_func": "TSTP", "two_emb_layer": False}
ASTP = {"pooling_func": "ASTP", "emb_bn": False}
# (WeSpeaker model, its module, model_args as its config.yaml writes them, our registry name)
ARCHITECTURES = [
    ("ResNet34", "resnet", {"feat_dim": 80, "embed_dim": 256, **TSTP}, "resnet34"),
    ("ResNet152", "resnet", {"feat_dim": 80, "embed_dim": 256, **TSTP}, "resnet152"),
    ("ResNet221", "resnet", {"feat_dim": 80, "embed_dim": 256, **TSTP}, "resnet221"),
    ("ResNet293", "resnet", {"feat_dim": 80, "embed_dim": 256, **TSTP}, "resnet293"),
    ("ERes2Net34_Base", "eres2net", {"feat_dim": 80, "embed_dim": 192, **TSTP},
     "eres2net34_base"),
    ("ERes2Net34_Large", "eres2net", {"feat_dim": 80, "embed_dim": 192, **TSTP},
     "eres2net34_large"),
    ("ERes2Net34_aug", "eres2net", {"feat_dim": 80, "embed_dim": 192, **TSTP}, "eres2net34_aug"),
    ("CAMPPlus", "campplus", {"feat_dim": 80, "embed_dim": 512, "pooling_func": "TSTP"},
     "campplus_e512"),
    ("ECAPA_TDNN_c512", "ecapa_tdnn", {"feat_dim": 80, "embed_dim": 192, **ASTP},
     "ecapa_tdnn_ws_c512"),
    ("ECAPA_TDNN_c1024", "ecapa_tdnn", {"feat_dim": 80, "embed_dim": 192, **ASTP},
     "ecapa_tdnn_ws_c1024"),
    ("ECAPA_TDNN_GLOB_c512", "ecapa_tdnn", {"feat_dim": 80, "embed_dim": 192, **ASTP},
     "ecapa_tdnn_ws_glob_c512"),
    ("ECAPA_TDNN_GLOB_c1024", "ecapa_tdnn", {"feat_dim": 80, "embed_dim": 192, **ASTP},
     "ecapa_tdnn_ws_glob_c1024"),
    ("SimAM_ResNet34_ASP", "samresnet", {"in_planes": 64, "embed_dim": 256, "acoustic_dim": 80,
                                         "dropout": 0}, "simam_resnet34"),
    ("SimAM_ResNet100_ASP", "samresnet", {"in_planes": 64, "embed_dim": 256, "acoustic_dim": 80,
                                          "dropout": 0}, "simam_resnet100"),
]
# Same code paths as the full-size model of their family kept in the default suite.
SLOW = {"ResNet152", "ResNet293", "ERes2Net34_Large", "ERes2Net34_aug", "ECAPA_TDNN_c1024",
        "ECAPA_TDNN_GLOB_c1024", "SimAM_ResNet100_ASP"}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return speech_crop(tmp_path_factory.mktemp("speech"))


def wespeaker_folder(folder: Path, name: str, module: str, model_args: dict,
                     seed: int = 0) -> torch.nn.Module:
    """Write ``config.yaml`` + ``avg_model.pt`` (with a ``projection.weight`` head) of a random
    upstream ``name``; returns the upstream network (eval mode)."""
    net = randomize_all(getattr(wespeaker_module(module), name)(**model_args), seed)
    state = dict(net.state_dict())
    state["projection.weight"] = torch.randn(7, model_args.get("embed_dim", 256))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "avg_model.pt")
    config = {"model": name, "model_args": model_args,
              "dataset_args": {"fbank_args": {"num_mel_bins": 80, "frame_shift": 10,
                                              "frame_length": 25, "dither": 1.0}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return net


def import_and_embed(kind: str, folder: Path, wav: Path, tmp_path: Path,
                     extra: tuple[str, ...] = ()) -> tuple[np.ndarray, dict]:
    """``r2n-audio import KIND folder`` then ``r2n-audio embed wav``; the embedding and bundle."""
    bundle = tmp_path / "bundle.pt"
    assert main(["import", kind, str(folder), "-o", str(bundle), *extra]) == 0
    assert main(["embed", str(wav), "--model", str(bundle), "-o", str(tmp_path / "emb"),
                 "--device", "cpu"]) == 0
    return load_embeddings(tmp_path / "emb")[wav.stem], load_bundle(bundle)


@pytest.mark.parametrize("name, module, model_args, ours", [
    pytest.param(*a, marks=pytest.mark.slow if a[0] in SLOW else ()) for a in ARCHITECTURES])
def test_wespeaker_parity_through_the_cli(name, module, model_args, ours, speech: Path,
                                          tmp_path: Path) -> None:
    upstream = wespeaker_folder(tmp_path / name, name, module, model_args)
    ours_vec, bundle = import_and_embed("wespeaker", tmp_path / name, speech, tmp_path)
    assert bundle["model_name"] == ours and "projection.weight" not in bundle["state_dict"]
    params = sum(v.numel() for k, v in bundle["state_dict"].items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert params == sum(p.numel() for p in upstream.parameters())
    ref = wespeaker_extract(upstream, speech)
    assert cosine_gap(ours_vec, ref) <= 1e-4


def test_wespeaker_resnet221_parameter_count() -> None:
    net = getattr(wespeaker_module("resnet"), "ResNet221")(80, 256, pooling_func="TSTP")
    assert sum(p.numel() for p in net.parameters()) == 23_792_224


def test_bottleneck_layout_parity_tiny(speech: Path, tmp_path: Path) -> None:
    """The bottleneck key map on a small upstream layout (fast, runs in every suite)."""
    resnet = wespeaker_module("resnet")
    upstream = randomize_all(resnet.ResNet(resnet.Bottleneck, [1, 2, 1, 1], m_channels=8,
                                           feat_dim=80, embed_dim=64))
    from r2n_audio.inference.importers.common import Arch, fit_architecture
    from r2n_audio.inference.importers.wespeaker import RESNET_BOTTLENECK

    arch = Arch("tiny", "resnet_bottleneck_tiny", {"layers": [1, 2, 1, 1]}, RESNET_BOTTLENECK)
    _, model = fit_architecture([arch], upstream.state_dict(), "tiny")
    feats = torch.randn(1, 150, 80)
    with torch.no_grad():
        assert torch.allclose(model(feats), upstream(feats)[-1], atol=1e-5, rtol=1e-4)


def test_unknown_model_is_named(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save({"w": torch.zeros(1)}, folder / "avg_model.pt")
    (folder / "config.yaml").write_text("model: XVEC_Unknown\nmodel_args: {feat_dim: 80}\n")
    assert main(["import", "wespeaker", str(folder), "-o", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "XVEC_Unknown" in err and "ResNet221" in err
    assert not (tmp_path / "b.pt").exists()


def test_mismatching_checkpoint_names_nearest_and_keys(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    wespeaker_folder(folder, "ResNet34", "resnet", {"feat_dim": 80, "embed_dim": 256, **TSTP})
    state = torch.load(folder / "avg_model.pt", weights_only=True)
    state["layer9.weight"] = state.pop("layer4.2.bn2.weight")
    torch.save(state, folder / "avg_model.pt")
    with pytest.raises(ModelError, match=r"fits no known architecture; nearest WeSpeaker "
                                         r"ResNet34.*missing keys \(1\): layer4.2.bn2.weight.*"
                                         r"unexpected keys \(1\): layer9.weight"):
        import_model("wespeaker", folder)


def test_unsupported_pooling_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    wespeaker_folder(folder, "ResNet34", "resnet", {"feat_dim": 80, "embed_dim": 256, **TSTP})
    (folder / "config.yaml").write_text("model: ResNet34\nmodel_args:\n  feat_dim: 80\n"
                                        "  embed_dim: 256\n  pooling_func: ASTP\n")
    with pytest.raises(ModelError, match="pooling_func TSTP"):
        import_model("wespeaker", folder)


def test_hub_repo_file_names(tmp_path: Path) -> None:
    """Wespeaker's hub repos name the files after the model (``voxceleb_resnet34_LM.yaml/.pt``)."""
    folder = tmp_path / "w"
    upstream = wespeaker_folder(folder, "ResNet34", "resnet",
                                {"feat_dim": 80, "embed_dim": 256, **TSTP})
    (folder / "config.yaml").rename(folder / "voxceleb_resnet34_LM.yaml")
    (folder / "avg_model.pt").rename(folder / "voxceleb_resnet34_LM.pt")
    bundle = import_model("wespeaker", folder)
    assert torch.equal(bundle["state_dict"]["embedding.weight"], upstream.seg_1.weight)
