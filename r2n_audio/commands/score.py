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

from r2n_audio.commands._types import probability
from r2n_audio.errors import DataFormatError

__all__ = ["HELP", "add_arguments", "run"]

HELP = "score a trial list against stored embeddings (EER, minDCF, AS-Norm, calibration, DET)"

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
    parser.add_argument("--top-n", type=_at_least_two, default=300, metavar="N",
                        help="cohort scores kept per utterance by AS-Norm (default 300; at "
                             "least 2, as the cohort)")
    parser.add_argument("--calibration", type=Path, metavar="CAL.json",
                        help="apply this calibration JSON (scores become log-likelihood ratios)")
    parser.add_argument("--fit-calibration", type=Path, metavar="OUT.json",
                        help="fit a calibration on this labelled list and write it here")
    parser.add_argument("--calibration-prior", type=probability, default=0.5, metavar="P",
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


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (the standard deviation of one score "
                                         f"is 0), got {value}")
    return value


def _load_inputs(args: argparse.Namespace):
    from r2n_audio.data.embeddings import load_embeddings
    from r2n_audio.data.manifests import read_trials
    from r2n_audio.scoring.calibration import Calibration
    from r2n_audio.scoring.cosine import check_as_norm, load_cohort, load_mean

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
    if cohort is not None:
        try:
            check_as_norm(len(cohort), args.top_n)
        except ValueError as err:
            raise DataFormatError(args.cohort, str(err)) from None
    calibration = Calibration.load(args.calibration) if args.calibration else None
    return trials, embeddings, mean, cohort, calibration


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


def _write_outputs(args: argparse.Namespace, trials, scored, fitted, scoring: str) -> None:
    from r2n_audio.atomic import atomic_write_text

    if args.det:
        from r2n_audio.scoring.plot import plot_det

        plot_det(args.det, {args.trials.name: (scored.scores, scored.labels)}, title=scoring)
    if args.output:
        rows = np.flatnonzero(scored.result.valid)
        text = "".join(f"{trials.enroll[i]} {trials.test[i]} {s:.6f}\n"
                       for i, s in zip(rows.tolist(), scored.scores.tolist()))
        atomic_write_text(args.output, text)
    if fitted is not None:
        fitted.save(args.fit_calibration)


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


def _score(args: argparse.Namespace):
    """Score (and fit a calibration on) the list; library errors become one-line errors."""
    from r2n_audio.scoring.trials import fit_trial_calibration, score_trial_list

    trials, embeddings, mean, cohort, calibration = _load_inputs(args)
    try:
        raw = score_trial_list(trials, embeddings, mean=mean, cohort=cohort, top_n=args.top_n)
        _check_missing(args, trials, raw.result)
        fitted = (fit_trial_calibration(raw, qmf=args.qmf, prior=args.calibration_prior)
                  if args.fit_calibration else None)
        scored = raw if calibration is None else score_trial_list(
            trials, embeddings, mean=mean, cohort=cohort, top_n=args.top_n,
            calibration=calibration)
        metrics = scored.metrics() if trials.labelled else {}
    except ValueError as err:
        source = args.calibration if calibration is not None else args.trials
        raise DataFormatError(source, str(err)) from None
    return trials, scored, fitted, metrics


def run(args: argparse.Namespace) -> int:
    """Score, report, and write the requested outputs."""
    from r2n_audio.atomic import refuse_overwriting_inputs
    from r2n_audio.scoring.trials import describe_scoring

    store = args.embeddings  # a Kaldi script reads its archive: both are inputs
    refuse_overwriting_inputs(
        [args.output, args.det, args.fit_calibration],
        [args.trials, store, args.mean, args.cohort, args.calibration,
         *([store.with_suffix(".ark"), store.with_suffix(".scp")]
           if store.suffix in (".ark", ".scp") else [])])
    trials, scored, fitted, metrics = _score(args)
    valid = scored.result.valid
    labels = scored.labels if scored.labels is not None else np.zeros(0)
    keys = ("eer", "min_dcf_0.01", "min_dcf_0.05", "threshold_eer")
    if metrics:
        metrics["eer"] *= 100.0  # percent in reports
    scoring = describe_scoring(args.mean is not None, args.top_n if args.cohort else None,
                               scored.calibrated)
    summary = {k: metrics.get(k) for k in keys} | {
        "n_target": int((labels == 1).sum()), "n_nontarget": int((labels == 0).sum()),
        "n_missing": int((~valid).sum()), "n_missing_keys": len(scored.result.missing_keys),
        "n_trials": len(trials), "trials": str(args.trials), "scoring": scoring}
    summary |= {k: v for k, v in metrics.items() if k not in keys}
    _write_outputs(args, trials, scored, fitted, scoring)
    _report(args, summary)
    return 0
