"""Turn other toolkits' pretrained speaker models into r2n-audio bundles.

Supported sources (``r2n-audio import KIND SRC -o bundle.pt``):

``speechbrain``
    A ``spkrec-ecapa-voxceleb``-style folder: ``hyperparams.yaml`` (read as data, never
    executed), ``embedding_model.ckpt`` and optionally ``mean_var_norm_emb.ckpt``. The bundle
    uses SpeechBrain's own front-end (:class:`~r2n_audio.features.speechbrain_fbank.
    SpeechBrainFrontend`: its Fbank and sentence mean normalisation) and subtracts the
    ``mean_var_norm_emb`` global mean from embeddings, i.e. it reproduces
    ``EncoderClassifier.encode_batch(wavs, normalize=True)`` (``normalize=False`` when the folder
    has no ``mean_var_norm_emb``).
``wespeaker``
    A folder with ``config.yaml`` and ``avg_model.pt`` (or any single ``*.pt``), WeSpeaker's
    pretrained layout. ``ResNet34`` maps onto our ``resnet34`` (``shortcut.`` -> ``downsample.``,
    ``seg_1.`` -> ``embedding.``, the ``projection.*`` classifier head dropped); the front-end is WeSpeaker's Kaldi fbank on int16
    samples (hamming window, no dither) with per-utterance CMN.
``3dspeaker``
    ERes2Net / CAM++ checkpoints: refused with a clear error while those architectures are not
    in the model zoo (``r2n_audio.models.list_models()``).

Every checkpoint is read with ``torch.load(weights_only=True)``; one that pickles code is refused.
Keys must match the target model exactly (:func:`~r2n_audio.inference.embedder.
load_weights_strict`): a checkpoint that does not fit fails naming the first mismatching keys.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from r2n_audio.errors import ModelError
from r2n_audio.inference.bundle import make_bundle
from r2n_audio.inference.embedder import load_weights_strict
from r2n_audio.models import create_model

__all__ = ["IMPORTERS", "import_model", "import_speechbrain", "import_wespeaker",
           "import_3dspeaker", "load_checkpoint", "read_hyperparams"]


def load_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with one-line errors.

    Raises
    ------
    ModelError
        Missing or unreadable file, or a pickle that carries code (refused, never run).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = (str(err).strip().splitlines() or ["unsafe pickle"])[0]
        raise ModelError(f"{path}: refused to load: the checkpoint carries code or objects "
                         f"that are not plain tensors ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise ModelError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: "
                         f"{first[:160]})") from None


# ---------------------------------------------------------------------------- hyperparams.yaml
class _TagLoader(yaml.SafeLoader):
    """SafeLoader that keeps HyperPyYAML tags (``!new:``, ``!ref``...) as plain data."""


def _tagged(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return {"__tag__": tag, "__value__": value}


_TagLoader.add_multi_constructor("!", _tagged)


def read_hyperparams(path: str | os.PathLike) -> dict[str, Any]:
    """Read a SpeechBrain ``hyperparams.yaml`` as data, resolving simple ``!ref <key>`` values.

    Nothing is imported or instantiated: ``!new:speechbrain...Class`` nodes become
    ``{"__tag__": "new:speechbrain...Class", "__value__": {arguments}}``.
    """
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_TagLoader)  # noqa: S506
    except (OSError, yaml.YAMLError) as err:
        raise ModelError(f"{path}: cannot read hyperparams ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: hyperparams.yaml is not a mapping")
    return _resolve(raw, raw, path, depth=0)


def _resolve(value: Any, top: dict[str, Any], path: Path, depth: int) -> Any:
    if depth > 20:
        raise ModelError(f"{path}: !ref references nest too deep (a cycle?)")
    if isinstance(value, dict) and value.get("__tag__") == "ref":
        match = re.fullmatch(r"<([\w.]+)>", str(value["__value__"]).strip())
        if match and match.group(1) in top:
            return _resolve(top[match.group(1)], top, path, depth + 1)
        return value  # an expression (e.g. a path) we do not need
    if isinstance(value, dict):
        return {k: _resolve(v, top, path, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, top, path, depth + 1) for v in value]
    return value


def _find_new(hparams: dict[str, Any], key: str, class_suffix: str,
              scan: bool = True) -> dict[str, Any] | None:
    """Arguments of the ``!new:...<class_suffix>`` node under ``key``; with ``scan``, of the
    first such node anywhere on the top level (for classes a yaml holds once)."""
    candidates = [hparams.get(key)] + (list(hparams.values()) if scan else [])
    for node in candidates:
        if (isinstance(node, dict) and str(node.get("__tag__", "")).startswith("new:")
                and node["__tag__"].endswith(class_suffix)):
            return dict(node["__value__"] or {})
    return None


# ---------------------------------------------------------------------------- SpeechBrain
_SB_ECAPA_DEFAULTS = dict(input_size=80, channels=[512, 512, 512, 512, 1536],
                          kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1],
                          attention_channels=128, res2net_scale=8, se_channels=128,
                          global_context=True, groups=[1, 1, 1, 1, 1], lin_neurons=192)


def _sb_model_spec(hparams: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """Registry name and overrides of our ECAPA equal to the yaml's ``ECAPA_TDNN``."""
    args = _find_new(hparams, "embedding_model", "ECAPA_TDNN.ECAPA_TDNN")
    if args is None:
        raise ModelError(f"{path}: no speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN embedding "
                         f"model in hyperparams.yaml; only SpeechBrain's ECAPA is supported")
    unknown = sorted(set(args) - set(_SB_ECAPA_DEFAULTS) - {"device", "activation"})
    if unknown:
        raise ModelError(f"{path}: unsupported ECAPA_TDNN arguments {unknown}")
    cfg = {**_SB_ECAPA_DEFAULTS, **args}
    if any(int(g) != 1 for g in cfg["groups"]) or not cfg["global_context"]:
        raise ModelError(f"{path}: grouped convolutions and global_context=False are not "
                         f"supported by r2n-audio's ECAPA")
    return _ecapa_spec(cfg, path)


def _ecapa_spec(cfg: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """Closest registered name plus every structural argument, spelled out (JSON types)."""
    channels = [int(c) for c in cfg["channels"]]
    named = {(512, 1536): "ecapa_tdnn_c512", (1024, 1536): "ecapa_tdnn_c1024",
             (1024, 3072): "ecapa_tdnn_c1024_mfa3072"}
    name = named.get((channels[0], channels[-1]), "ecapa_tdnn_c512")
    return name, {
        "feat_dim": int(cfg["input_size"]), "embed_dim": int(cfg["lin_neurons"]),
        "channels": channels, "kernel_sizes": [int(k) for k in cfg["kernel_sizes"]],
        "dilations": [int(d) for d in cfg["dilations"]],
        "attention_channels": int(cfg["attention_channels"]),
        "res2net_scale": int(cfg["res2net_scale"]), "se_channels": int(cfg["se_channels"])}


def import_speechbrain(src: str | os.PathLike) -> dict[str, Any]:
    """Bundle from a SpeechBrain pretrained folder (see the module docstring)."""
    src = Path(src)
    yaml_path = src / "hyperparams.yaml"
    if not yaml_path.is_file():
        raise ModelError(f"{src}: no hyperparams.yaml: expected a SpeechBrain pretrained folder "
                         f"(hyperparams.yaml + embedding_model.ckpt)")
    hparams = read_hyperparams(yaml_path)
    name, args = _sb_model_spec(hparams, yaml_path)
    frontend = _sb_frontend(hparams, yaml_path)
    state = load_checkpoint(src / "embedding_model.ckpt")
    model = create_model(name, **args)
    load_weights_strict(model, _as_state_dict(state, src / "embedding_model.ckpt"),
                        str(src / "embedding_model.ckpt"))
    mean = _sb_embedding_mean(hparams, src, yaml_path)
    return make_bundle(
        name, args, model.state_dict(), frontend, sample_rate=frontend["sample_rate"],
        embedding_mean=mean, meta={"source": "speechbrain", "source_path": str(src.resolve())})


def _sb_frontend(hparams: dict[str, Any], path: Path) -> dict[str, Any]:
    fbank = _find_new(hparams, "compute_features", "features.Fbank")
    if fbank is None:
        raise ModelError(f"{path}: no speechbrain.lobes.features.Fbank front-end")
    allowed = {"n_mels", "sample_rate", "f_min", "f_max", "n_fft", "win_length", "hop_length"}
    harmless = {"deltas": False, "context": False, "requires_grad": False,
                "filter_shape": "triangular"}
    unsupported = sorted(k for k, v in fbank.items()
                         if k not in allowed and harmless.get(k, object()) != v)
    if unsupported:
        raise ModelError(f"{path}: unsupported Fbank options {unsupported}")
    norm = _find_new(hparams, "mean_var_norm", "InputNormalization", scan=False) or {}
    if norm.get("norm_type", "global") != "sentence" or norm.get("std_norm", True):
        raise ModelError(f"{path}: only InputNormalization(norm_type=sentence, std_norm=False) "
                         f"feature normalisation is supported, got {norm}")
    from r2n_audio.features.speechbrain_fbank import SpeechBrainFrontend

    sb = {**{"n_mels": 40, "sample_rate": 16000}, **{k: fbank[k] for k in allowed if k in fbank}}
    return SpeechBrainFrontend(mean_norm=True, **sb).config()


def _sb_embedding_mean(hparams: dict[str, Any], src: Path, path: Path) -> torch.Tensor | None:
    norm = _find_new(hparams, "mean_var_norm_emb", "InputNormalization", scan=False)
    ckpt = src / "mean_var_norm_emb.ckpt"
    if norm is None or not ckpt.is_file():
        return None
    if norm.get("std_norm", True):
        raise ModelError(f"{path}: mean_var_norm_emb with std_norm=True is not supported "
                         f"(bundles store a mean only)")
    stats = load_checkpoint(ckpt)
    mean = stats.get("glob_mean") if isinstance(stats, dict) else None
    if not isinstance(mean, torch.Tensor):
        raise ModelError(f"{ckpt}: no 'glob_mean' tensor in the embedding statistics")
    return mean.float().reshape(-1)


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: not a state_dict (expected a mapping of names to tensors)")
    return dict(obj)


# ---------------------------------------------------------------------------- WeSpeaker
_WESPEAKER_MODELS = {"ResNet34": "resnet34"}


def import_wespeaker(src: str | os.PathLike) -> dict[str, Any]:
    """Bundle from a WeSpeaker pretrained folder (``config.yaml`` + ``avg_model.pt``)."""
    src = Path(src)
    config_path = src / "config.yaml"
    if not config_path.is_file():
        raise ModelError(f"{src}: no config.yaml: expected a WeSpeaker model folder "
                         f"(config.yaml + avg_model.pt)")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ModelError(f"{config_path}: cannot parse ({str(err).splitlines()[0]})") from None
    arch = str(config.get("model", ""))
    if arch not in _WESPEAKER_MODELS:
        raise ModelError(f"{config_path}: WeSpeaker model {arch!r} is not supported; supported: "
                         f"{sorted(_WESPEAKER_MODELS)} (WeSpeaker's ECAPA differs from "
                         f"SpeechBrain's, which is the one in r2n-audio's zoo)")
    margs = dict(config.get("model_args") or {})
    if margs.get("two_emb_layer", False) or margs.get("pooling_func", "TSTP") != "TSTP":
        raise ModelError(f"{config_path}: only pooling_func TSTP with two_emb_layer false is "
                         f"supported, got {margs}")
    name = _WESPEAKER_MODELS[arch]
    args = {"feat_dim": int(margs.get("feat_dim", 80)), "embed_dim": int(margs.get("embed_dim", 256))}
    ckpt = _single_checkpoint(src)
    state = _as_state_dict(load_checkpoint(ckpt), ckpt)
    state = _wespeaker_keys(state)
    model = create_model(name, **args)
    load_weights_strict(model, state, str(ckpt))
    fbank_args = dict((config.get("dataset_args") or {}).get("fbank_args") or {})
    frontend = {"type": "kaldi", "num_mel_bins": int(fbank_args.get("num_mel_bins", args["feat_dim"])),
                "frame_length": float(fbank_args.get("frame_length", 25)),
                "frame_shift": float(fbank_args.get("frame_shift", 10)), "dither": 0.0,
                "window_type": "hamming", "energy_floor": 0.0, "sample_frequency": 16000.0,
                "waveform_scale": 32768.0, "cmn": True}
    return make_bundle(name, args, model.state_dict(), frontend, sample_rate=16000,
                       meta={"source": "wespeaker", "source_path": str(src.resolve())})


def _wespeaker_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """WeSpeaker ResNet names -> ours: drop the ``projection.*`` classifier head and a DDP
    ``module.`` prefix, ``shortcut.`` -> ``downsample.``, ``seg_1.`` -> ``embedding.``."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("projection."):
            continue
        key = key.replace(".shortcut.", ".downsample.")
        out[re.sub(r"^seg_1\.", "embedding.", key)] = value
    return out


def _single_checkpoint(src: Path) -> Path:
    if (src / "avg_model.pt").is_file():
        return src / "avg_model.pt"
    found = sorted(src.glob("*.pt"))
    if len(found) != 1:
        raise ModelError(f"{src}: expected avg_model.pt (or exactly one *.pt), found "
                         f"{[p.name for p in found]}")
    return found[0]


# ---------------------------------------------------------------------------- 3D-Speaker
def import_3dspeaker(src: str | os.PathLike) -> dict[str, Any]:
    """3D-Speaker ERes2Net / CAM++: refused until those architectures are in the zoo."""
    src = Path(src)
    if not src.exists():
        raise ModelError(f"{src}: not found")
    raise ModelError(f"{src}: 3D-Speaker checkpoints are not supported: ERes2Net and CAM++ are "
                     f"not in r2n-audio's model zoo (supported imports: speechbrain ECAPA-TDNN, "
                     f"wespeaker ResNet34)")


IMPORTERS = {"speechbrain": import_speechbrain, "wespeaker": import_wespeaker,
             "3dspeaker": import_3dspeaker}


def import_model(kind: str, src: str | os.PathLike) -> dict[str, Any]:
    """Dispatch to the importer for ``kind`` (one of :data:`IMPORTERS`)."""
    if kind not in IMPORTERS:
        raise ModelError(f"unknown source toolkit {kind!r}; choose from {sorted(IMPORTERS)}")
    src = Path(src)
    if not src.is_dir():
        raise ModelError(f"{src}: not a folder; pass the pretrained model's folder")
    return IMPORTERS[kind](src)
