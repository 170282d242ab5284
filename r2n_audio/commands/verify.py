"""``r2n-audio verify A B --model M``: are two recordings the same speaker?

Prints the cosine score, the log-likelihood ratio when a calibration is given, the decision and
the threshold with where it comes from (``--threshold``, the calibration's LLR 0 point, or the
bundle's own ``meta["threshold"]`` and where that was calibrated). Without any threshold it
prints the score and no decision. The deciding is :mod:`r2n_audio.scoring.decision`.

Exit codes: 0 same speaker (or no decision), 3 different speakers, 2 bad input.
"""

from __future__ import annotations

import argparse

from r2n_audio.commands._types import DEVICES, device

HELP = "score two audio files against each other (cosine) and decide same/different speaker"

#: Exit code for "different speakers", so scripts can branch without parsing the output.
EXIT_DIFFERENT = 3

_EPILOG = ("exit status: 0 same speaker (or no threshold to decide with), 3 different "
           "speakers, 2 bad input (one line on stderr). A bundle's threshold was set on the "
           "audio named in its output line: check it on your own recordings.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio verify``."""
    parser.epilog = _EPILOG
    parser.add_argument("audio_a", help="first audio file")
    parser.add_argument("audio_b", help="second audio file")
    parser.add_argument("--model", "-m", required=True, help="model bundle (.pt)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, default=None,
                       help="cosine threshold: scores >= T are the same speaker")
    group.add_argument("--calibration", default=None,
                       help="calibration JSON (r2n-audio score --fit-calibration): decide on LLR >= 0")
    parser.add_argument("--device", type=device, default="auto",
                        help=f"{DEVICES} (default auto)")


def run(args: argparse.Namespace) -> int:
    """Embed both files, score, decide; exit 3 for different speakers."""
    from r2n_audio.inference.embedder import Embedder

    embedder = Embedder.from_pretrained(args.model, device=args.device)
    decision = embedder.verify(args.audio_a, args.audio_b, args.threshold, args.calibration)
    print(f"score: {decision.score:.6f} (cosine)")
    if decision.llr is not None:
        print(f"llr: {decision.llr:.4f}")
    if decision.same is None:
        print("decision: none (no threshold: pass --threshold T or --calibration C)")
        return 0
    print(f"decision: {'same speaker' if decision.same else 'different speakers'}")
    source = "--threshold" if args.threshold is not None else decision.source
    print(f"threshold: {decision.threshold:g} ({source})")
    return 0 if decision.same else EXIT_DIFFERENT


__all__ = ["EXIT_DIFFERENT", "HELP", "add_arguments", "run"]
