"""``r2n-audio import 3dspeaker`` against 3D-Speaker's own model code (``speakerlab``).

For every 3D-Speaker architecture and size: the upstream network with random weights, BatchNorm
statistics and affine terms, saved as ModelScope ships it (a bare state dict under its published
file name, with or without ``configuration.json``), imported through the CLI *without* naming the
architecture (recognised from keys and shapes), embedded with ``r2n-audio embed`` on real speech
and compared with 3D-Speaker's extraction (``speakerlab.process.processor.FBank(80, 16000,
mean_nor=True)``): 1 - cosine <= 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from r2n_audio.cli import main
from r2n_audio.errors import ModelError
from r2n_audio.inference.importers import import_model

from .test_import_wespeaker import import_and_embed
from .upstream_models import cosine_gap, randomize_all, speakerlab_extract, speech_crop

# (--arch name, speakerlab module, class, constructor arguments, ModelScope file, with json)
ARCHITECTURES = [
    ("eres2net_base", "speakerlab.models.eres2net.ERes2Net", "ERes2Net",
     {"feat_dim": 80, "embedding_size": 192}, "pretrained_eres2net.ckpt", True),
    ("eres2net_large", "speakerlab.models.eres2net.ERes2Net", "ERes2Net",
     {"feat_dim": 80, "embedding_size": 192, "m_channels": 64}, "pretrained_eres2net_large.ckpt",
     False),
    ("eres2netv2", "speakerlab.models.eres2net.ERes2NetV2", "ERes2NetV2",
     {"feat_dim": 80, "embedding_size": 192, "baseWidth": 26, "scale": 2, "expansion": 2},
     "pretrained_eres2netv2.ckpt", True),
    ("eres2netv2_w24s4ep4", "speakerlab.models.eres2net.ERes2NetV2", "ERes2NetV2",
     {"feat_dim": 80, "embedding_size": 192, "baseWidth": 24, "scale": 4, "expansion": 4},
     "pretrained_eres2netv2w24s4ep4.ckpt", False),
    ("campplus", "speakerlab.models.campplus.DTDNN", "CAMPPlus",
     {"feat_dim": 80, "embedding_size": 192}, "campplus_cn_common.bin", True),
    ("campplus_512", "speakerlab.models.campplus.DTDNN", "CAMPPlus",
     {"feat_dim": 80, "embedding_size": 512}, "campplus_cn_en_common.pt", False),
]
SLOW = {"eres2net_large", "eres2netv2_w24s4ep4"}  # same code as eres2net_base / eres2netv2


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return speech_crop(tmp_path_factory.mktemp("speech"), start=20.0, seconds=3.0)


def modelscope_folder(folder: Path, module: str, cls: str, kwargs: dict, filename: str,
                      with_json: bool, seed: int = 0) -> torch.nn.Module:
    """A ModelScope-layout folder holding a random upstream model's bare state dict."""
    net = randomize_all(getattr(pytest.importorskip(module), cls)(**kwargs), seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / filename)
    if with_json:
        (folder / "configuration.json").write_text(json.dumps({
            "framework": "pytorch", "task": "speaker-verification",
            "model": {"type": "cam++-sv", "model_config": {"sample_rate": 16000, "fbank_dim": 80,
                                                           "emb_size": kwargs["embedding_size"]},
                      "pretrained_model": filename}}))
    return net


@pytest.mark.parametrize("arch, module, cls, kwargs, filename, with_json", [
    pytest.param(*a, marks=pytest.mark.slow if a[0] in SLOW else ()) for a in ARCHITECTURES])
def test_3dspeaker_parity_through_the_cli(arch, module, cls, kwargs, filename, with_json,
                                          speech: Path, tmp_path: Path) -> None:
    upstream = modelscope_folder(tmp_path / arch, module, cls, kwargs, filename, with_json)
    ours, bundle = import_and_embed("3dspeaker", tmp_path / arch, speech, tmp_path)
    from r2n_audio.inference.importers.threed_speaker import THREED_SPEAKER_MODELS

    assert bundle["meta"]["architecture"] == THREED_SPEAKER_MODELS[arch][0]  # recognised
    params = sum(v.numel() for k, v in bundle["state_dict"].items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert params == sum(p.numel() for p in upstream.parameters())
    assert cosine_gap(ours, speakerlab_extract(upstream, speech)) <= 1e-4


def test_named_arch_that_does_not_fit_names_keys(tmp_path: Path, capsys) -> None:
    modelscope_folder(tmp_path / "c", "speakerlab.models.campplus.DTDNN", "CAMPPlus",
                      {"feat_dim": 80, "embedding_size": 192}, "campplus_cn_common.bin", False)
    out = tmp_path / "b.pt"
    assert main(["import", "3dspeaker", str(tmp_path / "c"), "-o", str(out),
                 "--arch", "eres2netv2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nearest 3D-Speaker ERes2NetV2" in err
    assert "missing keys" in err and not out.exists()


def test_checkpoint_fitting_nothing_names_the_nearest(tmp_path: Path) -> None:
    modelscope_folder(tmp_path / "c", "speakerlab.models.campplus.DTDNN", "CAMPPlus",
                      {"feat_dim": 80, "embedding_size": 192}, "campplus.bin", False)
    state = torch.load(tmp_path / "c" / "campplus.bin", weights_only=True)
    state["xvector.dense.linear.weight"] = state["xvector.dense.linear.weight"][:100]
    torch.save(state, tmp_path / "c" / "campplus.bin")
    with pytest.raises(ModelError, match=r"fits no known architecture; nearest 3D-Speaker CAM\+\+ "
                                         r"\(embedding 192\).*shape mismatches \(1\): "
                                         r"xvector.dense.linear.weight"):
        import_model("3dspeaker", tmp_path / "c")


def test_unknown_arch_name(tmp_path: Path, capsys) -> None:
    (tmp_path / "m").mkdir()
    torch.save({"w": torch.zeros(1)}, tmp_path / "m" / "x.ckpt")
    assert main(["import", "3dspeaker", str(tmp_path / "m"), "-o", str(tmp_path / "b.pt"),
                 "--arch", "eres3net"]) == 2
    err = capsys.readouterr().err
    assert "unknown 3D-Speaker architecture 'eres3net'" in err and "eres2netv2" in err
