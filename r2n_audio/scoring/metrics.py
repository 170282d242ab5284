"""Detection metrics for verification trials: EER, minDCF, DET curve, Cllr, actual DCF.

Pure numpy, one sort, O(N log N) time and O(N) memory (never a thresholds x scores matrix).
The sort is numpy's default introsort rather than a stable one (4x faster at 10^6 trials):
counts are only read at the boundaries of tie groups, so the order *within* a group cannot
change any result, which the tests check by permuting tied trials.

Labels are 1 = target, 0 = nontarget; a trial is *accepted* when its score is ``>= threshold``.

Operating points. Sort the scores and take as thresholds the K distinct score values
``u_1 < ... < u_K`` plus ``+inf``. At threshold ``u_k``

    P_miss(k) = #{targets with s < u_k} / N_tar,
    P_fa(k)   = #{nontargets with s >= u_k} / N_non,

so a threshold never splits tied scores: trials with equal scores are always accepted or
rejected together. ``k = 1`` accepts everything (0, 1); ``+inf`` rejects everything (1, 0).
These are exactly the points of scikit-learn's ``roc_curve(drop_intermediate=False)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DetCurve", "det_curve", "compute_eer", "compute_min_dcf", "compute_cllr",
           "compute_act_dcf", "evaluate"]


class DetCurve(NamedTuple):
    """Operating points, threshold ascending (P_miss rising, P_fa falling).

    Attributes
    ----------
    p_miss, p_fa : np.ndarray (K + 1,)
        Miss and false-alarm rates, fractions.
    thresholds : np.ndarray (K + 1,)
        Accept-if-``>=`` thresholds; the last is ``+inf`` (reject all).
    """

    p_miss: np.ndarray
    p_fa: np.ndarray
    thresholds: np.ndarray


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.size} vs {labels.size}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or Inf")
    targets = labels == 1
    if not (targets | (labels == 0)).all():
        raise ValueError("labels must be 1 (target) or 0 (nontarget)")
    n_tar = int(targets.sum())
    n_non = targets.size - n_tar
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"need both classes: {n_tar} target and {n_non} nontarget trials")
    return scores, targets


def det_curve(scores, labels) -> DetCurve:
    """All operating points of a trial set (see the module docstring for the formulas).

    Parameters
    ----------
    scores : array-like (N,)
        Finite scores, higher = more likely the same speaker.
    labels : array-like (N,)
        1 = target, 0 = nontarget; both must be present.

    Returns
    -------
    DetCurve
        ``(p_miss, p_fa, thresholds)``, each (K + 1,) with K the number of distinct scores.

    Raises
    ------
    ValueError
        Length mismatch, non-finite scores, labels other than 0/1, or a missing class (the
        message gives both counts).
    """
    scores, targets = _check(scores, labels)
    n = scores.size
    order = np.argsort(scores)  # any order within a tie group gives the same counts
    sorted_scores = scores[order]
    sorted_tar = targets[order]
    tar_cum = np.cumsum(sorted_tar, dtype=np.int64)  # targets among the first i+1
    n_tar = int(tar_cum[-1])
    n_non = n - n_tar
    # First index of each run of equal scores: thresholds sit between tie groups.
    is_start = np.empty(n, dtype=bool)
    is_start[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    k = starts.size
    tar_below = tar_cum[starts] - sorted_tar[starts]  # targets strictly below each score
    p_miss, p_fa, thresholds = np.empty(k + 1), np.empty(k + 1), np.empty(k + 1)
    np.divide(tar_below, n_tar, out=p_miss[:k])
    np.divide(n_non - (starts - tar_below), n_non, out=p_fa[:k])
    thresholds[:k] = sorted_scores[starts]
    p_miss[k], p_fa[k], thresholds[k] = 1.0, 0.0, np.inf
    return DetCurve(p_miss, p_fa, thresholds)


def _eer_from_curve(curve: DetCurve) -> tuple[float, float]:
    p_miss, p_fa, thr = curve
    diff = p_miss - p_fa  # rises from -1 to +1 as the threshold rises
    k = int(np.searchsorted(diff, 0.0, side="left"))  # first point with P_miss >= P_fa
    if diff[k] == 0.0 or k == 0:
        return float(p_miss[k]), float(_finite(thr, k))
    # Crossing between points k-1 and k: interpolate linearly (the segment is reachable by
    # randomising the decision between the two thresholds, as tied scores would be).
    a = -diff[k - 1] / (diff[k] - diff[k - 1])
    eer = p_miss[k - 1] + a * (p_miss[k] - p_miss[k - 1])
    nearest = k - 1 if a < 0.5 else k
    return float(eer), float(_finite(thr, nearest))


def _finite(thresholds: np.ndarray, k: int) -> float:
    """Threshold ``k`` as a finite number: ``+inf`` becomes the next float above the maximum."""
    t = thresholds[k]
    return float(np.nextafter(thresholds[-2], np.inf)) if np.isinf(t) else float(t)


def compute_eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and its threshold.

    The EER is where P_miss = P_fa on the DET curve: with D(k) = P_miss(k) - P_fa(k)
    (non-decreasing in k), take the first k with D(k) >= 0 and interpolate linearly between
    points k-1 and k, ``EER = P_miss(k-1) + a (P_miss(k) - P_miss(k-1))`` with
    ``a = -D(k-1) / (D(k) - D(k-1))``. It differs from any single-threshold convention by at
    most one tie group, i.e. 1/min(N_tar, N_non) without ties.

    Parameters
    ----------
    scores : array-like (N,)
    labels : array-like (N,)
        1 = target, 0 = nontarget.

    Returns
    -------
    eer : float
        Fraction in [0, 1] (separated classes give 0, reversed give 1).
    threshold : float
        The operating-point threshold nearest the crossing (accept if score >= threshold).
    """
    return _eer_from_curve(det_curve(scores, labels))


def _dcf_from_curve(curve: DetCurve, p_target: float, c_miss: float,
                    c_fa: float) -> tuple[float, float]:
    _check_costs(p_target, c_miss, c_fa)
    dcf = c_miss * p_target * curve.p_miss + c_fa * (1.0 - p_target) * curve.p_fa
    k = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(dcf[k] / norm), _finite(curve.thresholds, k)


def _check_costs(p_target: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")


def compute_min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0,
                    c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost over all thresholds (Kaldi / NIST SRE convention).

    ``DCF(k) = C_miss P_target P_miss(k) + C_fa (1 - P_target) P_fa(k)``, normalised by
    ``min(C_miss P_target, C_fa (1 - P_target))`` (the cost of the better trivial system), so
    the result lies in [0, 1]. SpeechBrain's ``minDCF`` returns the unnormalised value.

    Returns
    -------
    min_dcf : float
    threshold : float
        Accept-if-``>=`` threshold reaching it (above every score when rejecting all wins).
    """
    return _dcf_from_curve(det_curve(scores, labels), p_target, c_miss, c_fa)


def evaluate(scores, labels, p_targets: tuple[float, ...] = (0.01, 0.05),
             llr: bool = False) -> dict[str, float]:
    """Every metric of a trial set from one sort: the one metrics entry point.

    Parameters
    ----------
    scores : array-like (N,)
    labels : array-like (N,)
        1 = target, 0 = nontarget.
    p_targets : tuple of float
        Priors of the minDCFs (C_miss = C_fa = 1).
    llr : bool
        The scores are calibrated log-likelihood ratios: add Cllr and the actual DCFs.

    Returns
    -------
    dict
        ``eer`` (a fraction: reports multiply by 100), ``threshold_eer``, and
        ``min_dcf_<p>`` / ``threshold_dcf_<p>`` for each prior; with ``llr`` also ``cllr`` and
        ``act_dcf_<p>``.
    """
    curve = det_curve(scores, labels)
    eer, thr = _eer_from_curve(curve)
    out = {"eer": eer, "threshold_eer": thr}
    for p in p_targets:
        out[f"min_dcf_{p:g}"], out[f"threshold_dcf_{p:g}"] = _dcf_from_curve(curve, p, 1.0, 1.0)
    if llr:
        out["cllr"] = compute_cllr(scores, labels)
        for p in p_targets:
            out[f"act_dcf_{p:g}"] = compute_act_dcf(scores, labels, p)
    return out


def compute_cllr(llrs, labels) -> float:
    """Log-likelihood-ratio cost (Brummer) of calibrated scores, in bits.

    ``Cllr = 1/2 [mean_tar log2(1 + e^-s) + mean_non log2(1 + e^s)]`` with ``s`` natural-log
    likelihood ratios; 0 is perfect, 1 is an uninformative system (all s = 0).
    """
    llrs, targets = _check(llrs, labels)
    c_tar = np.logaddexp(0.0, -llrs[targets]).mean()
    c_non = np.logaddexp(0.0, llrs[~targets]).mean()
    return float(0.5 * (c_tar + c_non) / np.log(2.0))


def compute_act_dcf(llrs, labels, p_target: float = 0.01, c_miss: float = 1.0,
                    c_fa: float = 1.0) -> float:
    """Actual normalised DCF of natural-log likelihood ratios at the Bayes threshold.

    Accept when ``s >= log(C_fa (1 - P_target) / (C_miss P_target))``, then
    ``DCF = C_miss P_target P_miss + C_fa (1 - P_target) P_fa`` normalised as in
    :func:`compute_min_dcf`. Equal to minDCF only for perfectly calibrated scores.
    """
    llrs, targets = _check(llrs, labels)
    _check_costs(p_target, c_miss, c_fa)
    threshold = np.log(c_fa * (1.0 - p_target) / (c_miss * p_target))
    accept = llrs >= threshold
    p_miss = float((~accept[targets]).mean())
    p_fa = float(accept[~targets].mean())
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return float(dcf / min(c_miss * p_target, c_fa * (1.0 - p_target)))
