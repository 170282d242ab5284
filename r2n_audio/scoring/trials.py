"""Score a trial list end to end: cosine with mean subtraction, AS-Norm, calibration, metrics.

The library behind ``r2n-audio score`` and the recipes' evaluation, so that a Python user gets
exactly what the command prints::

    >>> scored = score_trial_list(trials, embeddings, mean=mean, cohort=cohort)  # doctest: +SKIP
    >>> scored.metrics()["eer"]                                 # a fraction   # doctest: +SKIP

Quality measures (for calibration with QMF, WeSpeaker's idea) are named
``<side>_<measure>``: side ``enroll`` or ``test``, measure ``norm`` (the raw embedding's norm)
or ``cohort_mean`` (the mean of its top-N AS-Norm cohort scores; needs a cohort).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from r2n_audio.data.manifests import Trials
from r2n_audio.scoring.calibration import Calibration, fit_calibration
from r2n_audio.scoring.cosine import ScoredTrials, check_as_norm, score_trials
from r2n_audio.scoring.metrics import evaluate

__all__ = ["QUALITY_MEASURES", "TrialScores", "score_trial_list", "quality_measures",
           "fit_trial_calibration", "describe_scoring"]

QUALITY_MEASURES = ("enroll_norm", "test_norm", "enroll_cohort_mean", "test_cohort_mean")


@dataclass
class TrialScores:
    """Scores of the trials whose two embeddings exist.

    Attributes
    ----------
    result : ScoredTrials
        Everything :func:`~r2n_audio.scoring.cosine.score_trials` computed (all trials, NaN
        where missing; per-utterance norms and cohort means).
    scores : np.ndarray (T',) float64
        Final scores of the valid trials: cosine, AS-Norm, or log-likelihood ratios when
        ``calibrated``.
    labels : np.ndarray (T',) or None
        1 = target, 0 = nontarget; ``None`` for an unlabelled list.
    calibrated : bool
    """

    result: ScoredTrials
    scores: np.ndarray
    labels: np.ndarray | None
    calibrated: bool = False

    def metrics(self, p_targets: Sequence[float] = (0.01, 0.05)) -> dict[str, float]:
        """:func:`~r2n_audio.scoring.metrics.evaluate` of the scores (EER as a fraction);
        calibrated scores add Cllr and actual DCFs. Raises ``ValueError`` without labels."""
        if self.labels is None:
            raise ValueError("an unlabelled trial list has no metrics")
        return evaluate(self.scores, self.labels, tuple(p_targets), llr=self.calibrated)


def score_trial_list(trials: Trials, embeddings: Mapping[str, np.ndarray],
                     mean: np.ndarray | None = None, cohort: np.ndarray | None = None,
                     top_n: int = 300, calibration: Calibration | None = None) -> TrialScores:
    """Cosine-score ``trials`` (mean subtraction, AS-Norm with a cohort), then calibrate.

    Parameters
    ----------
    trials : Trials
    embeddings : mapping of str to np.ndarray (D,)
    mean : np.ndarray (D,), optional
    cohort : np.ndarray (C, D), optional
        Enables AS-Norm over the ``top_n`` highest cohort scores (both need at least 2).
    top_n : int
    calibration : Calibration, optional
        Turns the scores into log-likelihood ratios (with its quality measures).

    Returns
    -------
    TrialScores

    Raises
    ------
    ValueError
        A cohort or ``top_n`` under 2, or a calibration needing measures that cannot be made.
    """
    if cohort is not None:
        check_as_norm(len(cohort), top_n)
    result = score_trials(trials, dict(embeddings), mean=mean, cohort=cohort, top_n=top_n)
    valid = result.valid
    labels = np.asarray(trials.labels)[valid] if trials.labelled else None
    scores = result.scores[valid]
    if calibration is not None:
        quality = quality_measures(result, list(calibration.quality_weights))
        scores = calibration.apply(scores, quality)
    return TrialScores(result, scores, labels, calibration is not None)


def quality_measures(result: ScoredTrials, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-trial quality measures (T',) of the valid trials, by name (see the module doc).

    Raises
    ------
    ValueError
        An unknown name, or a cohort measure when no cohort was scored.
    """
    per_utterance = {"norm": result.norms, "cohort_mean": result.cohort_mean}
    valid = result.valid
    out = {}
    for name in names:
        side, _, measure = name.partition("_")
        if name not in QUALITY_MEASURES:
            raise ValueError(f"unknown quality measure '{name}'; known: "
                             f"{', '.join(QUALITY_MEASURES)}")
        if per_utterance[measure] is None:
            raise ValueError(f"quality measure '{name}' needs --cohort (an AS-Norm cohort)")
        index = result.enroll_idx if side == "enroll" else result.test_idx
        out[name] = per_utterance[measure][index[valid]]
    return out


def fit_trial_calibration(scored: TrialScores, qmf: bool = False,
                          prior: float = 0.5) -> Calibration:
    """Fit a calibration of ``scored`` (uncalibrated, labelled) scores to its labels.

    With ``qmf`` the embedding norms, and the cohort means when AS-Norm ran, are weighed in.
    Judge it on other trials than these (a calibration always looks good on its own data).
    """
    if scored.labels is None or scored.calibrated:
        raise ValueError("fitting a calibration needs labelled, uncalibrated scores")
    result = scored.result
    names = [n for n in QUALITY_MEASURES
             if result.cohort_mean is not None or "cohort" not in n] if qmf else []
    return fit_calibration(scored.scores, scored.labels, quality_measures(result, names),
                           prior=prior)


def describe_scoring(mean: bool, top_n: int | None, calibrated: bool) -> str:
    """The scoring in words, to print next to every number (``top_n=None``: no AS-Norm)."""
    parts = ["cosine"] + (["mean subtraction"] if mean else [])
    parts += [f"AS-Norm top-{top_n}"] if top_n is not None else []
    parts += ["calibrated"] if calibrated else []
    return ", ".join(parts)
