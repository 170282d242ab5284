"""Averaging the weights of several Lightning checkpoints (the last N epochs), and bundling.

``r2n-audio average exp/run/checkpoints --last 10 -o avg.ckpt [--bundle model.pt]`` (the
command in :mod:`r2n_audio.commands.average`) averages the ``--last`` newest ``*.ckpt`` files of
a folder (or the files given) with :func:`write_average`: a checkpoint with the averaged
``state_dict`` and, optionally, the export bundle of the averaged embedding network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import torch

from r2n_audio.atomic import atomic_path
from r2n_audio.checkpoints import read_checkpoint
from r2n_audio.errors import ModelError

__all__ = ["average_checkpoints", "last_checkpoints", "write_average"]


def _epoch_of(path: Path) -> int:
    match = re.search(r"epoch=(\d+)", path.name)
    return int(match.group(1)) if match else -1


def last_checkpoints(folder: str | os.PathLike, n: int) -> list[Path]:
    """The ``n`` checkpoints of ``folder`` with the highest ``epoch=K`` in their names
    (``last.ckpt`` excluded, it duplicates one of them)."""
    paths = [p for p in Path(folder).glob("*.ckpt") if p.name != "last.ckpt"]
    if not paths:
        raise ModelError(f"{folder}: no *.ckpt checkpoints to average")
    return sorted(paths, key=lambda p: (_epoch_of(p), p.stat().st_mtime))[-n:]


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict:
    """Load checkpoints and return the last one with its ``state_dict`` averaged over all.

    Floating-point tensors are averaged (in float64, cast back); integer buffers such as
    BatchNorm's ``num_batches_tracked`` and non-tensor entries are taken from the last file.
    Checkpoints are read with ``weights_only=True``.
    """
    if not paths:
        raise ModelError("no checkpoints given to average")
    total: dict[str, torch.Tensor] = {}
    last = None
    for path in paths:
        last = read_checkpoint(path)
        if not isinstance(last, dict) or not isinstance(last.get("state_dict"), dict):
            raise ModelError(f"{path}: no 'state_dict': not a Lightning training checkpoint")
        for key, value in last["state_dict"].items():
            if torch.is_tensor(value) and value.is_floating_point():
                total[key] = total.get(key, 0) + value.double()
    for key, value in total.items():
        last["state_dict"][key] = (value / len(paths)).to(last["state_dict"][key].dtype)
    last["averaged_from"] = [str(p) for p in paths]
    return last


def write_average(paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                  bundle: str | os.PathLike | None = None) -> dict:
    """Average ``paths`` (:func:`average_checkpoints`), write the checkpoint to ``out`` and,
    given ``bundle``, the export bundle of the averaged embedding network; both atomically.

    Returns the averaged checkpoint.
    """
    averaged = average_checkpoints(paths)
    with atomic_path(out) as tmp:
        torch.save(averaged, tmp)
    if bundle is not None:
        from r2n_audio.inference.bundle import save_bundle
        from r2n_audio.training.module import SpeakerModule

        if not isinstance(averaged.get("hyper_parameters"), dict):
            raise ModelError(f"{paths[-1]}: no 'hyper_parameters' to rebuild the model from; "
                             "cannot write a bundle")
        module = SpeakerModule(**averaged["hyper_parameters"])
        module.load_state_dict(averaged["state_dict"])
        save_bundle(module.bundle(meta={"averaged_from": averaged["averaged_from"]}), bundle)
    return averaged
