"""``r2n-audio verify A B --model M``: are two recordings the same speaker?

Prints the cosine score, the log-likelihood ratio when a calibration is given, the decision and
the threshold it used (``--threshold``, the calibration's LLR 0 point, or the bundle's own
``meta["threshold"]``). Without any threshold it prints the score and no decision.
"""

from __future__ import annotations

import argparse

from r2n_audio.errors import R2NError

HELP = "score two audio files against each other (cosine) and decide same/different speaker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio verify``."""
    parser.add_argument("audio_a", help="first audio file")
    parser.add_argument("audio_b", help="second audio file")
    parser.add_argument("--model", "-m", required=True, help="model bundle (.pt)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, default=None,
                       help="cosine threshold: scores >= T are the same speaker")
    group.add_argument("--calibration", default=None,
                       help="calibration JSON (r2n-audio score --fit-calibration): decide on LLR >= 0")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")


def _llr(path: str, score: float) -> float:
    """Log-likelihood ratio of ``score`` under the calibration file at ``path``."""
    import numpy as np

    from r2n_audio.scoring.calibration import Calibration

    calibration = Calibration.load(path)
    if calibration.quality_weights:
        raise R2NError(f"{path}: this calibration needs quality measures "
                       f"{sorted(calibration.quality_weights)}; verify supports plain score "
                       f"calibrations (fit one without quality measures)")
    return float(calibration.apply(np.array([score]))[0])


def run(args: argparse.Namespace) -> int:
    """Embed both files, score, decide."""
    from r2n_audio.inference.bundle import load_bundle
    from r2n_audio.inference.embedder import Embedder
    from r2n_audio.scoring.cosine import normalize

    bundle = load_bundle(args.model)
    embedder = Embedder.from_pretrained(bundle, device=args.device)
    a, b = normalize(embedder.embed_files([args.audio_a, args.audio_b]))
    score = float(a @ b)  # the cosine, as `r2n-audio score` computes it
    print(f"score: {score:.6f} (cosine)")
    if args.calibration is not None:
        llr = _llr(args.calibration, score)
        print(f"llr: {llr:.4f}")
        value, threshold, source = llr, 0.0, f"LLR >= 0 from calibration {args.calibration}"
    elif args.threshold is not None:
        value, threshold, source = score, args.threshold, "--threshold"
    elif isinstance(bundle.get("meta", {}).get("threshold"), (int, float)):
        value, threshold, source = score, float(bundle["meta"]["threshold"]), "the bundle's meta"
    else:
        print("decision: none (no threshold: pass --threshold T or --calibration C)")
        return 0
    same = value >= threshold
    print(f"decision: {'same speaker' if same else 'different speakers'}")
    print(f"threshold: {threshold:g} ({source})")
    return 0


__all__ = ["HELP", "add_arguments", "run"]
