"""``r2n-audio import speechbrain|wespeaker|3dspeaker SRC -o bundle.pt``: convert a pretrained
model folder from another toolkit into an r2n-audio bundle (see
:mod:`r2n_audio.inference.importers` for the layouts read and what is reproduced)."""

from __future__ import annotations

import argparse
from pathlib import Path

from r2n_audio.errors import ModelError

HELP = "convert a SpeechBrain / WeSpeaker / 3D-Speaker model folder into a bundle"
KINDS = ("speechbrain", "wespeaker", "3dspeaker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio import``."""
    parser.add_argument("kind", choices=KINDS, help="source toolkit")
    parser.add_argument("source", help="the pretrained model's folder")
    parser.add_argument("-o", "--output", required=True, help="bundle file to write (.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")


def run(args: argparse.Namespace) -> int:
    """Import, save atomically, print a one-line summary."""
    from r2n_audio.inference.bundle import save_bundle
    from r2n_audio.inference.importers import import_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise ModelError(f"{out}: exists; pass --overwrite to replace it")
    bundle = import_model(args.kind, args.source)
    save_bundle(bundle, out)
    n_params = sum(v.numel() for k, v in bundle["state_dict"].items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    norm = bundle["embedding_norm"]
    print(f"import: {args.kind} {args.source} -> {out}: {bundle['model_name']} "
          f"({n_params:,} parameters), front-end {bundle['frontend']['type']}, embedding mean "
          f"{'subtracted' if norm['mean'] is not None else 'none'}")
    return 0


__all__ = ["HELP", "KINDS", "add_arguments", "run"]
