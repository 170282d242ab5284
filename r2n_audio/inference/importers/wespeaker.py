"""WeSpeaker: a pretrained model folder (``config.yaml`` + ``avg_model.pt``) as a bundle.

``config.yaml`` names the network (``model``, e.g. ``ResNet221``) and its arguments
(``model_args``: ``feat_dim``, ``embed_dim``, ``pooling_func``, ``two_emb_layer``...);
``avg_model.pt`` is the averaged state dict, holding the training head under ``projection.*``
too (dropped). The Hugging Face repos name the two files after the model instead
(``voxceleb_resnet221_LM.yaml`` / ``.pt``): a folder's only ``*.yaml`` / ``*.pt`` is read then.
Every WeSpeaker architecture in r2n-audio's zoo is read: ResNet34/152/221/293,
ECAPA-TDNN c512/c1024 and GLOB, ERes2Net34 Base/Large/aug, CAM++, SimAM-ResNet34/100 (those not
yet in the zoo are refused by name).

Front-end: WeSpeaker's extraction (``wespeaker/bin/infer_onnx.py``, ``wespeaker/cli``): samples
times ``2**15``, Kaldi fbank with a hamming window and the config's bins / frame length / shift,
dither 0 at test time, per-utterance mean normalisation; the output layer is ``embed_a``
(``seg_1`` / the last linear), no L2 norm.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from r2n_audio.errors import ModelError
from r2n_audio.inference.importers.common import (Arch, KeyMap, build_bundle, fit_architecture,
                                                  kaldi_frontend, load_state, per_key, rename)
from r2n_audio.models import simam_resnet

__all__ = ["WESPEAKER_MODELS", "RESNET_BASIC", "RESNET_BOTTLENECK", "import_wespeaker",
           "wespeaker_arch"]

_HEAD = (r"^projection\.",)
#: ResNet34 (BasicBlock): WeSpeaker's ``shortcut`` is our ``downsample``, ``seg_1`` ``embedding``.
RESNET_BASIC = rename((r"\.shortcut\.", ".downsample."), (r"^seg_1\.", "embedding."))
#: ResNet152/221/293 (Bottleneck = our Bottle2neck at scale 1): ``conv2``/``bn2`` is split 0.
RESNET_BOTTLENECK = rename((r"\.shortcut\.", ".downsample."), (r"^seg_1\.", "embedding."),
                           (r"\.conv2\.", ".convs.0."), (r"\.bn2\.", ".bns.0."))

#: WeSpeaker ``model`` -> (our registry name, its default pooling, key map or None: the zoo
#: module's ``upstream_key_map(keys, "wespeaker")`` if it has one, else the same names).
WESPEAKER_MODELS: dict[str, tuple[str, str, KeyMap | None]] = {
    "ResNet34": ("resnet34", "TSTP", RESNET_BASIC),
    "ResNet152": ("resnet152", "TSTP", RESNET_BOTTLENECK),
    "ResNet221": ("resnet221", "TSTP", RESNET_BOTTLENECK),
    "ResNet293": ("resnet293", "TSTP", RESNET_BOTTLENECK),
    "ECAPA_TDNN_c512": ("ecapa_tdnn_ws_c512", "ASTP", None),
    "ECAPA_TDNN_c1024": ("ecapa_tdnn_ws_c1024", "ASTP", None),
    "ECAPA_TDNN_GLOB_c512": ("ecapa_tdnn_ws_glob_c512", "ASTP", None),
    "ECAPA_TDNN_GLOB_c1024": ("ecapa_tdnn_ws_glob_c1024", "ASTP", None),
    "ERes2Net34_Base": ("eres2net34_base", "TSTP", None),
    "ERes2Net34_Large": ("eres2net34_large", "TSTP", None),
    "ERes2Net34_aug": ("eres2net34_aug", "TSTP", None),
    "CAMPPlus": ("campplus_e512", "TSTP", None),
    "SimAM_ResNet34_ASP": ("simam_resnet34", "ASP", per_key(simam_resnet.upstream_key_map)),
    "SimAM_ResNet100_ASP": ("simam_resnet100", "ASP", per_key(simam_resnet.upstream_key_map)),
}

# model_args that change nothing at inference, or that we pass on as feat_dim / embed_dim
_PASSED = {"feat_dim", "embed_dim", "acoustic_dim", "pooling_func", "two_emb_layer", "emb_bn",
           "dropout", "in_planes"}


def wespeaker_arch(name: str, model_args: dict[str, Any], where: str) -> Arch:
    """Our :class:`Arch` for WeSpeaker's ``model: name`` with ``model_args``."""
    if name not in WESPEAKER_MODELS:
        raise ModelError(f"{where}: WeSpeaker model {name!r} is not supported; supported: "
                         f"{', '.join(WESPEAKER_MODELS)}")
    model, pooling, key_map = WESPEAKER_MODELS[name]
    unknown = sorted(set(model_args) - _PASSED)
    if unknown:
        raise ModelError(f"{where}: model_args {unknown} of {name} are not supported")
    if (model_args.get("pooling_func", pooling) != pooling or model_args.get("two_emb_layer")
            or model_args.get("emb_bn") or model_args.get("in_planes", 64) != 64):
        raise ModelError(f"{where}: {name} is supported with pooling_func {pooling}, "
                         f"two_emb_layer false, emb_bn false (SimAM: in_planes 64) only, got "
                         f"{model_args}")
    feat_dim = model_args.get("feat_dim", model_args.get("acoustic_dim", 80))
    args = {"feat_dim": int(feat_dim)}
    if "embed_dim" in model_args:
        args["embed_dim"] = int(model_args["embed_dim"])
    return Arch(f"WeSpeaker {name}", model, args, key_map, drop=_HEAD, source="wespeaker")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ModelError(f"{path}: cannot parse ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_args", {}) or {}, dict):
        raise ModelError(f"{path}: not a WeSpeaker config (a mapping with model, model_args)")
    return config


def _single(src: Path, name: str, pattern: str) -> Path:
    """``src / name``, else the folder's only ``pattern`` file (the hub repos name them after
    the model: ``voxceleb_resnet221_LM.yaml`` / ``.pt``)."""
    if (src / name).is_file():
        return src / name
    found = sorted(src.glob(pattern))
    if len(found) != 1:
        raise ModelError(f"{src}: expected a WeSpeaker model folder with {name} (or exactly one "
                         f"{pattern}), found {[p.name for p in found]}")
    return found[0]


def import_wespeaker(src: str | os.PathLike, arch: str | None = None) -> dict[str, Any]:
    """Bundle from a WeSpeaker pretrained folder (see the module docstring).

    Parameters
    ----------
    src : path
        The folder (``config.yaml`` + ``avg_model.pt``).
    arch : str, optional
        WeSpeaker model name overriding the config's ``model``.
    """
    src = Path(src)
    config_path = _single(src, "config.yaml", "*.yaml")
    config = _read_config(config_path)
    margs = dict(config.get("model_args") or {})
    spec = wespeaker_arch(arch or str(config.get("model", "")), margs, str(config_path))
    ckpt = _single(src, "avg_model.pt", "*.pt")
    spec, model = fit_architecture([spec], load_state(ckpt), str(ckpt))
    fbank = dict((config.get("dataset_args") or {}).get("fbank_args") or {})
    frontend = kaldi_frontend(num_mel_bins=fbank.get("num_mel_bins", spec.args["feat_dim"]),
                              frame_length=fbank.get("frame_length", 25),
                              frame_shift=fbank.get("frame_shift", 10))
    return build_bundle(spec, model, frontend, "wespeaker", src.resolve())
