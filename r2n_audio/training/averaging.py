"""Averaging the weights of several Lightning checkpoints (the last N epochs), and bundling.

``python -m r2n_audio.training.averaging --out avg.ckpt --last 10 exp/run/checkpoints``
averages the ``--last`` newest ``*.ckpt`` files of a folder (or the files given) and writes a
checkpoint with the averaged ``state_dict``; ``--bundle model.pt`` also writes the export bundle
of the averaged embedding network.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Sequence

import torch

from r2n_audio.atomic import atomic_path
from r2n_audio.checkpoints import read_checkpoint
from r2n_audio.errors import ModelError

__all__ = ["average_checkpoints", "last_checkpoints", "main"]


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
        for key, value in last["state_dict"].items():
            if torch.is_tensor(value) and value.is_floating_point():
                total[key] = total.get(key, 0) + value.double()
    for key, value in total.items():
        last["state_dict"][key] = (value / len(paths)).to(last["state_dict"][key].dtype)
    last["averaged_from"] = [str(p) for p in paths]
    return last


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="checkpoint files, or one folder")
    parser.add_argument("--out", required=True, help="averaged checkpoint to write")
    parser.add_argument("--last", type=int, default=10, help="with a folder: how many (10)")
    parser.add_argument("--bundle", help="also write the export bundle of the average here")
    args = parser.parse_args(argv)
    paths = (last_checkpoints(args.inputs[0], args.last)
             if len(args.inputs) == 1 and Path(args.inputs[0]).is_dir() else args.inputs)
    averaged = average_checkpoints(paths)
    with atomic_path(args.out) as tmp:
        torch.save(averaged, tmp)
    print(f"averaged {len(paths)} checkpoints -> {args.out}")
    if args.bundle:
        from r2n_audio.inference.bundle import save_bundle
        from r2n_audio.training.module import SpeakerModule

        module = SpeakerModule(**averaged["hyper_parameters"])
        module.load_state_dict(averaged["state_dict"])
        save_bundle(module.bundle(meta={"averaged_from": averaged["averaged_from"]}), args.bundle)
        print(f"bundle -> {args.bundle}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
