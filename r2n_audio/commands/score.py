"""``r2n-audio score``: cosine-score a trial list against stored embeddings.

Reads a VoxCeleb, Kaldi or unlabelled trial list and an embedding store (npy folder, .npz,
Kaldi ark/scp); optionally subtracts a mean, applies AS-Norm against a cohort, applies or fits
a calibration; prints EER and minDCF (or one JSON object) and can write per-trial scores and a
DET plot. Every check runs before any output is written, and outputs are written atomically,
so a failed run leaves existing files as they were.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from r2n_audio.errors import DataFormatError

__all__ = ["HELP", "add_arguments", "run"]

HELP = "score a trial list against stored embeddings (EER, minDCF, AS-Norm, calibration, DET)"

_QMF = ("enroll_norm", "test_norm", "enroll_cohort_mean", "test_cohort_mean")
_SHOW_MISSING = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio score``."""
    parser.add_argument("trials", type=Path,
                        help="trial list: '1 a.wav b.wav' (VoxCeleb), 'a b target|nontarget' "
                             "(Kaldi) or 'a b' (unlabelled: scores only)")
    parser.add_argument("--embeddings", type=Path, required=True, metavar="PATH",
                        help="embedding store: folder of .npy, .npz, or Kaldi .ark/.scp")
    parser.add_argument("--mean", type=Path, metavar="PATH",
                        help="mean to subtract: a .npy vector or an embedding store (its mean)")
    parser.add_argument("--cohort", type=Path, metavar="PATH",
                        help="AS-Norm cohort: a .npy matrix (C, D) or an embedding store")
    parser.add_argument("--top-n", type=_positive, default=300, metavar="N",
                        help="cohort scores kept per utterance by AS-Norm (default 300)")
    parser.add_argument("--calibration", type=Path, metavar="CAL.json",
                        help="apply this calibration JSON (scores become log-likelihood ratios)")
    parser.add_argument("--fit-calibration", type=Path, metavar="OUT.json",
                        help="fit a calibration on this labelled list and write it here")
    parser.add_argument("--calibration-prior", type=_probability, default=0.5, metavar="P",
                        help="target prior of the calibration objective (default 0.5)")
    parser.add_argument("--qmf", action="store_true",
                        help="fit with quality measures: embedding norms, and cohort means "
                             "with --cohort")
    parser.add_argument("--output", type=Path, metavar="SCORES.txt",
                        help="write 'enroll test score' lines here")
    parser.add_argument("--det", type=Path, metavar="DET.png", help="write a DET plot (PNG) here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip trials whose embedding is missing instead of failing")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def _load_inputs(args: argparse.Namespace):
    from r2n_audio.data.embeddings import load_embeddings
    from r2n_audio.data.manifests import read_trials
    from r2n_audio.scoring.cosine import load_cohort, load_mean

    trials = read_trials(args.trials)
    if not trials.labelled and (args.det or args.fit_calibration):
        raise DataFormatError(args.trials, "--det and --fit-calibration need a labelled list")
    embeddings = load_embeddings(args.embeddings)
    dim = len(next(iter(embeddings.values())))
    mean = load_mean(args.mean) if args.mean else None
    cohort = load_cohort(args.cohort) if args.cohort else None
    for path, size in ((args.mean, None if mean is None else mean.shape[-1]),
                       (args.cohort, None if cohort is None else cohort.shape[-1])):
        if size is not None and size != dim:
            raise DataFormatError(path, f"dimension {size} does not match the embeddings' "
                                        f"{dim} in {args.embeddings}")
    return trials, embeddings, mean, cohort


def _check_missing(args: argparse.Namespace, trials, result) -> None:

    if not result.missing_keys or args.allow_missing:
        return
    first = int(np.flatnonzero(~result.valid)[0])
    missing = set(result.missing_keys)
    key = trials.enroll[first] if trials.enroll[first] in missing else trials.test[first]
    shown = ", ".join(result.missing_keys[:_SHOW_MISSING])
    more = "" if len(result.missing_keys) <= _SHOW_MISSING else ", ..."
    raise DataFormatError(
        args.trials, f"no embedding for '{key}' in {args.embeddings}; "
                     f"{len(result.missing_keys)} utterances missing ({shown}{more}); "
                     "embed them or pass --allow-missing", int(trials.lines[first]))


def _quality(result, names, calibration_path=None) -> dict:
    """Per-trial quality measures by name, from per-utterance norms and cohort means."""

    valid = result.valid
    per_utt = {"norm": result.norms, "cohort_mean": result.cohort_mean}
    out = {}
    for name in names:
        side, _, measure = name.partition("_")
        if measure not in per_utt or side not in ("enroll", "test"):
            raise DataFormatError(calibration_path, f"unknown quality measure '{name}'; "
                                                    f"known: {', '.join(_QMF)}")
        if per_utt[measure] is None:
            raise DataFormatError(calibration_path, f"quality measure '{name}' needs --cohort")
        idx = result.enroll_idx if side == "enroll" else result.test_idx
        out[name] = per_utt[measure][idx[valid]]
    return out


def _calibrate(args: argparse.Namespace, result, scores, labels):
    """Fit and/or apply a calibration; returns (scores, the fitted Calibration or None)."""
    from r2n_audio.scoring.calibration import Calibration, fit_calibration

    fitted = None
    if args.fit_calibration:
        names = [n for n in _QMF if args.cohort or "cohort" not in n] if args.qmf else []
        try:
            fitted = fit_calibration(scores, labels, _quality(result, names),
                                     prior=args.calibration_prior)
        except ValueError as err:
            raise DataFormatError(args.trials, f"cannot fit a calibration: {err}") from None
    if args.calibration:
        calibration = Calibration.load(args.calibration)
        quality = _quality(result, list(calibration.quality_weights), args.calibration)
        scores = calibration.apply(scores, quality)
    return scores, fitted


def _metrics(args: argparse.Namespace, scores, labels) -> dict:
    from r2n_audio.scoring.metrics import compute_act_dcf, compute_cllr, evaluate

    try:
        out = evaluate(scores, labels)
        if args.calibration:
            out["cllr"] = compute_cllr(scores, labels)
            for p in (0.01, 0.05):
                out[f"act_dcf_{p:g}"] = compute_act_dcf(scores, labels, p)
    except ValueError as err:
        raise DataFormatError(args.trials, f"cannot compute metrics: {err}") from None
    out["eer"] *= 100.0  # percent in reports
    return out


def _write_outputs(args: argparse.Namespace, trials, result, scores, labels, fitted) -> None:
    from r2n_audio.atomic import atomic_write_text

    if args.det:
        from r2n_audio.scoring.plot import plot_det

        plot_det(args.det, {args.trials.name: (scores, labels)}, title=_norm_name(args))
    if args.output:
        rows = np.flatnonzero(result.valid)
        text = "".join(f"{trials.enroll[i]} {trials.test[i]} {s:.6f}\n"
                       for i, s in zip(rows.tolist(), scores.tolist()))
        atomic_write_text(args.output, text)
    if fitted is not None:
        fitted.save(args.fit_calibration)


def _norm_name(args: argparse.Namespace) -> str:
    parts = ["cosine"] + (["mean subtraction"] if args.mean else [])
    parts += [f"AS-Norm top-{args.top_n}"] if args.cohort else []
    parts += ["calibrated"] if args.calibration else []
    return ", ".join(parts)


def _report(args: argparse.Namespace, summary: dict) -> None:
    if args.json:
        print(json.dumps(summary))
        return
    print(f"trials {args.trials}: {summary['n_target']} target, {summary['n_nontarget']} "
          f"nontarget, {summary['n_missing']} skipped (missing embeddings); "
          f"scoring: {summary['scoring']}")
    if summary["eer"] is None:
        print("unlabelled trial list: no metrics")
        return
    print(f"EER {summary['eer']:.3f}% (threshold {summary['threshold_eer']:.6g})  "
          f"minDCF(0.01) {summary['min_dcf_0.01']:.4f}  minDCF(0.05) {summary['min_dcf_0.05']:.4f}")
    if "cllr" in summary:
        print(f"Cllr {summary['cllr']:.4f}  actDCF(0.01) {summary['act_dcf_0.01']:.4f}  "
              f"actDCF(0.05) {summary['act_dcf_0.05']:.4f}")


def run(args: argparse.Namespace) -> int:
    """Score, report, and write the requested outputs."""
    from r2n_audio.scoring.cosine import score_trials

    trials, embeddings, mean, cohort = _load_inputs(args)
    result = score_trials(trials, embeddings, mean=mean, cohort=cohort, top_n=args.top_n)
    _check_missing(args, trials, result)
    valid = result.valid
    labels = trials.labels[valid]
    scores, fitted = _calibrate(args, result, result.scores[valid], labels)
    keys = ("eer", "min_dcf_0.01", "min_dcf_0.05", "threshold_eer")
    metrics = _metrics(args, scores, labels) if trials.labelled else dict.fromkeys(keys)
    summary = {k: metrics[k] for k in keys} | {
        "n_target": int((labels == 1).sum()), "n_nontarget": int((labels == 0).sum()),
        "n_missing": int((~valid).sum()), "n_missing_keys": len(result.missing_keys),
        "n_trials": len(trials), "trials": str(args.trials),
        "scoring": _norm_name(args)}
    summary |= {k: v for k, v in metrics.items() if k not in keys}
    _write_outputs(args, trials, result, scores, labels, fitted)
    _report(args, summary)
    return 0
