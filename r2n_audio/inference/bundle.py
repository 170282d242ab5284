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

__all__ = ["BUNDLE_FORMAT", "make_bundle", "save_bundle", "load_bundle"]

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
