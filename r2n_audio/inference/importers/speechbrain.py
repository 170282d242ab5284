"""SpeechBrain: a ``spkrec-ecapa-voxceleb``-style folder as a bundle.

The folder holds ``hyperparams.yaml`` (read as data, never executed), ``embedding_model.ckpt`` and
optionally ``mean_var_norm_emb.ckpt``. The bundle uses SpeechBrain's own front-end
(:class:`~r2n_audio.features.speechbrain_fbank.SpeechBrainFrontend`: its Fbank and sentence mean
normalisation) and subtracts the ``mean_var_norm_emb`` global mean from embeddings, i.e. it
reproduces ``EncoderClassifier.encode_batch(wavs, normalize=True)`` (``normalize=False`` when the
folder has no ``mean_var_norm_emb``).

The yaml is untrusted input: YAML aliases are bounded (:data:`MAX_YAML_ALIASES`) and so is the
size of the tree that resolving ``!ref`` builds (:data:`MAX_YAML_NODES`), so a few hundred bytes of
nested aliases ("billion laughs") fail at once instead of exhausting memory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from r2n_audio.checkpoints import read_checkpoint
from r2n_audio.errors import ModelError
from r2n_audio.inference.importers.common import Arch, build_bundle, fit_architecture, load_state

__all__ = ["MAX_YAML_ALIASES", "MAX_YAML_NODES", "import_speechbrain", "read_hyperparams"]

#: YAML aliases (``*name``) a hyperparams file may use; SpeechBrain's own use ``!ref`` instead.
MAX_YAML_ALIASES = 100
#: Nodes the resolved hyperparams tree may hold (SpeechBrain's largest yaml has a few hundred).
MAX_YAML_NODES = 100_000


class _TagLoader(yaml.SafeLoader):
    """SafeLoader that keeps HyperPyYAML tags (``!new:``, ``!ref``...) as plain data and refuses
    more than :data:`MAX_YAML_ALIASES` aliases."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} YAML aliases (nested "
                                     f"aliases expand exponentially; refused)")
        return super().compose_node(parent, index)


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
    return _resolve(raw, raw, path, depth=0, budget=[MAX_YAML_NODES])


def _resolve(value: Any, top: dict[str, Any], path: Path, depth: int, budget: list[int]) -> Any:
    # budget[0]: nodes still allowed; aliases and !ref both copy subtrees, so count every node.
    budget[0] -= 1
    if budget[0] < 0:
        raise ModelError(f"{path}: hyperparams expand to more than {MAX_YAML_NODES:,} nodes "
                         f"(nested references?); refused")
    if depth > 20:
        raise ModelError(f"{path}: !ref references nest too deep (a cycle?)")
    if isinstance(value, dict) and value.get("__tag__") == "ref":
        match = re.fullmatch(r"<([\w.]+)>", str(value["__value__"]).strip())
        if match and match.group(1) in top:
            return _resolve(top[match.group(1)], top, path, depth + 1, budget)
        return value  # an expression (e.g. a path) we do not need
    if isinstance(value, dict):
        return {k: _resolve(v, top, path, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, top, path, depth + 1, budget) for v in value]
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
    ckpt = src / "embedding_model.ckpt"
    arch, model = fit_architecture([Arch("SpeechBrain ECAPA-TDNN", name, args)],
                                   load_state(ckpt), str(ckpt))
    mean = _sb_embedding_mean(hparams, src, yaml_path)
    return build_bundle(arch, model, frontend, "speechbrain", src.resolve(),
                        embedding_mean=mean, sample_rate=frontend["sample_rate"])


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
    stats = read_checkpoint(ckpt)
    mean = stats.get("glob_mean") if isinstance(stats, dict) else None
    if not isinstance(mean, torch.Tensor):
        raise ModelError(f"{ckpt}: no 'glob_mean' tensor in the embedding statistics")
    return mean.float().reshape(-1)
