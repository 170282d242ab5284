"""The export bundle: one file that is everything needed to embed audio with a trained model.

A bundle is a plain dict saved with :func:`torch.save` and loaded with
``torch.load(weights_only=True)`` (nothing in it is code):

================  ==========================================================================
key               value
================  ==========================================================================
format            ``"r2n-audio-bundle"``
format_version    ``1``
model_name        registry name, e.g. ``"ecapa_tdnn_c512"`` (see :func:`r2n_audio.models.create_model`)
model_args        dict of ``create_model`` overrides (JSON types only)
state_dict        the embedding network's weights (no classifier head)
frontend          front-end config dict, e.g. ``{"type": "kaldi", "num_mel_bins": 80, ..., "cmn": True}``
sample_rate       int, the rate the front-end expects (16000)
embedding_norm    ``{"mean": Tensor (D,) or None, "l2": bool}``: applied after the network
versions          ``{"r2n_audio": ..., "torch": ...}`` of the writer
meta              free-form dict (training data, epochs, results, source toolkit)
================  ==========================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from r2n_audio import __version__
from r2n_audio.atomic import atomic_path
from r2n_audio.checkpoints import read_checkpoint
from r2n_audio.errors import ModelError

__all__ = ["BUNDLE_FORMAT", "make_bundle", "save_bundle", "load_bundle", "build_model",
           "load_weights_strict"]

BUNDLE_FORMAT = "r2n-audio-bundle"
_REQUIRED = ("model_name", "model_args", "state_dict", "frontend", "sample_rate")


def make_bundle(
    model_name: str,
    model_args: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    frontend: dict[str, Any],
    sample_rate: int = 16000,
    embedding_mean: torch.Tensor | None = None,
    l2_normalize: bool = False,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a bundle dict (see the module docstring for the keys)."""
    return {
        "format": BUNDLE_FORMAT,
        "format_version": 1,
        "model_name": model_name,
        "model_args": dict(model_args),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "frontend": dict(frontend),
        "sample_rate": int(sample_rate),
        "embedding_norm": {
            "mean": None if embedding_mean is None else embedding_mean.detach().cpu().float(),
            "l2": bool(l2_normalize),
        },
        # str(): torch.__version__ is a TorchVersion, which weights_only loading refuses.
        "versions": {"r2n_audio": __version__, "torch": str(torch.__version__)},
        "meta": dict(meta or {}),
    }


def save_bundle(bundle: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``bundle`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        torch.save(bundle, tmp)
    return Path(path)


def load_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a bundle (:func:`r2n_audio.checkpoints.read_checkpoint`, weights only).

    Raises
    ------
    ModelError
        Missing file, a pickle that carries code, a file that is not a bundle, or missing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model bundle (make one with `r2n-audio import` or "
                         f"a training recipe)")
    bundle = read_checkpoint(path, what="bundle")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"{path}: not an r2n-audio bundle (a raw checkpoint? convert it with "
                         f"`r2n-audio import`)")
    missing = [k for k in _REQUIRED if k not in bundle]
    if missing:
        raise ModelError(f"{path}: bundle lacks keys {missing}")
    return bundle


def load_weights_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model`` with every key and shape matching, or explain why not.

    Raises
    ------
    ModelError
        Naming up to five missing, unexpected and shape-mismatched keys each.
    """
    _check_fits(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)


def _check_fits(model: torch.nn.Module, state_dict: dict[str, Any], source: str) -> None:
    """Raise :class:`ModelError` unless keys and shapes of ``state_dict`` match ``model``'s."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad = [k for k in state_dict if k in own and not isinstance(state_dict[k], torch.Tensor)]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state_dict and k not in bad
              and state_dict[k].shape != v.shape]
    problems = [f"{what} ({len(keys)}): {', '.join(keys[:5])}"
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("entries that are not tensors", bad),
                                   ("shape mismatches", shapes)) if keys]
    if problems:
        raise ModelError(f"{source}: the checkpoint does not fit {type(model).__name__}: "
                         + "; ".join(problems))


def build_model(bundle: dict[str, Any], source: str = "bundle") -> torch.nn.Module:
    """The bundle's network with its weights, checked before anything large is allocated.

    The declared model is first built on PyTorch's ``meta`` device (shapes, no memory) and
    compared with the stored tensors: a small file declaring huge sizes (``channels=[100000,
    ...]``) fails here in milliseconds instead of allocating what it declares.

    Raises
    ------
    ModelError
        Unknown model, arguments it does not accept, or weights that do not fit.
    """
    name, args = bundle["model_name"], bundle["model_args"]
    if not isinstance(name, str) or not isinstance(args, dict):
        raise ModelError(f"{source}: model_name must be a string and model_args a dict")
    from r2n_audio.models import create_model  # lazy: this module stays light

    try:
        with torch.device("meta"):
            skeleton = create_model(name, **args)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{source}: model_args {args} do not build {name!r}: {err}") from None
    state = bundle["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{source}: state_dict is not a dict of tensors")
    _check_fits(skeleton, state, source)
    if _takes_tensors(skeleton, state):
        # the skeleton takes the stored tensors as they are: no second build, no random init
        # (0.5 s of a 20M-parameter model's start-up)
        skeleton.load_state_dict(state, strict=True, assign=True)
        if not any(t.is_meta for t in _tensors(skeleton)):
            return skeleton
    model = create_model(name, **args)
    model.load_state_dict(state, strict=True)
    return model


def _takes_tensors(skeleton: torch.nn.Module, state: dict[str, Any]) -> bool:
    """Whether ``state``'s tensors can become ``skeleton``'s as they are (same dtypes, on CPU)."""
    return all(state[k].dtype == v.dtype and state[k].device.type == "cpu"
               for k, v in skeleton.state_dict().items())


def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers and plain tensor attributes of every submodule."""
    return [t for m in model.modules() for t in (*m.parameters(recurse=False),
            *m.buffers(recurse=False), *vars(m).values()) if isinstance(t, torch.Tensor)]
