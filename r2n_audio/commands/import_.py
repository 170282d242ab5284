"""``r2n-audio import speechbrain|wespeaker|3dspeaker|pyannote SRC -o bundle.pt [--arch NAME]``:
convert a pretrained model folder (or a Hugging Face hub id) from another toolkit into an
r2n-audio bundle (see :mod:`r2n_audio.inference.importers` for the layouts read and what is
reproduced)."""

from __future__ import annotations

import argparse
from pathlib import Path

from r2n_audio.errors import ModelError

HELP = "convert a SpeechBrain / WeSpeaker / 3D-Speaker / pyannote model into a bundle"
KINDS = ("speechbrain", "wespeaker", "3dspeaker", "pyannote")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio import``."""
    parser.add_argument("kind", choices=KINDS, help="source toolkit")
    parser.add_argument("source", help="the pretrained model's folder, or a Hugging Face hub id "
                                       "(owner/name; needs huggingface_hub)")
    parser.add_argument("-o", "--output", required=True, help="bundle file to write (.pt)")
    parser.add_argument("--arch", help="architecture, when the folder does not say or to "
                                       "override it (3dspeaker: eres2net_base, eres2net_large, "
                                       "eres2netv2, eres2netv2_w24s4ep4, campplus, campplus_512; "
                                       "wespeaker: a WeSpeaker model name; pyannote: a class)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")


def run(args: argparse.Namespace) -> int:
    """Import, save atomically, print a one-line summary."""
    from r2n_audio.atomic import refuse_overwriting_inputs
    from r2n_audio.inference.bundle import save_bundle
    from r2n_audio.inference.importers import import_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise ModelError(f"{out}: exists; pass --overwrite to replace it")
    refuse_overwriting_inputs([out], [args.source])
    if out.exists() and not out.is_file():
        raise ModelError(f"{out}: not a regular file; choose a bundle file name")
    bundle = import_model(args.kind, args.source, arch=args.arch)
    save_bundle(bundle, out)
    n_params = sum(v.numel() for k, v in bundle["state_dict"].items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    norm = bundle["embedding_norm"]
    print(f"import: {args.kind} {args.source} -> {out}: {bundle['meta'].get('architecture')} as "
          f"{bundle['model_name']} ({n_params:,} parameters), front-end "
          f"{bundle['frontend']['type']}, embedding mean "
          f"{'subtracted' if norm['mean'] is not None else 'none'}")
    return 0


__all__ = ["HELP", "KINDS", "add_arguments", "run"]
