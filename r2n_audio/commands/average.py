"""``r2n-audio average CKPT... -o avg.ckpt [--last N] [--bundle model.pt]``: average the weights
of the last N training checkpoints (a folder) or of the checkpoints given, and optionally write
the export bundle of the average (see :mod:`r2n_audio.training.averaging`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from r2n_audio.commands._types import positive_int

__all__ = ["HELP", "add_arguments", "run"]

HELP = "average the weights of training checkpoints (the last N epochs) into one, or a bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio average``."""
    parser.add_argument("inputs", nargs="+", metavar="CKPT",
                        help="checkpoint files, or one folder of epoch=K checkpoints")
    parser.add_argument("-o", "--output", "--out", required=True, metavar="AVG.ckpt",
                        help="averaged checkpoint to write")
    parser.add_argument("--last", type=positive_int, default=10,
                        help="with a folder: how many of the newest epochs (default 10)")
    parser.add_argument("--bundle", metavar="MODEL.pt",
                        help="also write the export bundle of the averaged network here")


def run(args: argparse.Namespace) -> int:
    """Average, write, print what was written."""
    from r2n_audio.atomic import refuse_overwriting_inputs
    from r2n_audio.training.averaging import last_checkpoints, write_average

    folder = len(args.inputs) == 1 and Path(args.inputs[0]).is_dir()
    paths = last_checkpoints(args.inputs[0], args.last) if folder else args.inputs
    refuse_overwriting_inputs([args.output, args.bundle], paths)
    write_average(paths, args.output, args.bundle)
    print(f"average: {len(paths)} checkpoints ({', '.join(Path(p).name for p in paths)}) -> "
          f"{args.output}" + (f"; bundle -> {args.bundle}" if args.bundle else ""))
    return 0
