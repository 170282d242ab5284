"""``r2n-audio export --model M --format onnx|torchscript -o FILE [--with-frontend]``.

Writes the embedding network (and with ``--with-frontend`` the fbank front-end) as one graph with
dynamic batch and time axes, plus ``FILE.json`` describing its inputs and the front-end config;
then reloads it and prints the parity check: max |exported - eager| on a random batch of new
shape. Exit 1 when that difference exceeds ``--tolerance``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r2n_audio.commands._types import non_negative_float, positive_int
from r2n_audio.errors import ModelError

HELP = "export a model bundle to ONNX or TorchScript (with a parity check)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio export``."""
    parser.add_argument("--model", "-m", required=True, help="model bundle (.pt)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    parser.add_argument("-o", "--output", required=True, help="file to write")
    parser.add_argument("--with-frontend", action="store_true",
                        help="waveform in (front-end inside the graph) instead of features in")
    parser.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--tolerance", type=non_negative_float, default=1e-4,
                        help="largest accepted |exported - eager| (default 1e-4)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    """Export, check, report."""
    import torch

    from r2n_audio.atomic import refuse_overwriting_inputs
    from r2n_audio.inference.embedder import Embedder
    from r2n_audio.inference.export import export_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise ModelError(f"{out}: exists; pass --overwrite to replace it")
    refuse_overwriting_inputs([out, f"{out}.json"], [args.model])
    torch.manual_seed(0)
    embedder = Embedder.from_pretrained(args.model, device="cpu")
    report = export_model(embedder, out, args.format, args.with_frontend, opset=args.opset)
    takes = "waveform (B, N) + lengths" if args.with_frontend else "feats (B, T, F) + lengths"
    print(f"export: {args.format} -> {out} (takes {takes}; inputs and front-end described in "
          f"{out}.json)")
    diff = report["max_abs_diff"]
    ok = diff <= args.tolerance
    print(f"parity: max |diff| vs eager = {diff:.3g} on a random (3, ...) batch "
          f"({'ok' if ok else 'ABOVE'} tolerance {args.tolerance:g})")
    return 0 if ok else 1


__all__ = ["HELP", "add_arguments", "run"]
