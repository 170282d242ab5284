"""EER / minDCF / DET / Cllr / actDCF against scikit-learn, brute force, SpeechBrain and
hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from r2n_audio.scoring.metrics import (
    compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf, det_curve, evaluate)

PRIORS = [0.01, 0.05, 0.5]


def _trials(rng, n=2000, p_tar=0.3, ties="none"):
    """Random trials; ``ties``: "none", "pairs" (target/nontarget pairs share a score) or
    "heavy" (scores rounded to a coarse grid)."""
    labels = (rng.random(n) < p_tar).astype(np.int8)
    scores = rng.standard_normal(n) + 1.5 * labels
    if ties == "pairs":
        tar, non = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        k = min(len(tar), len(non)) // 2
        scores[non[:k]] = scores[tar[:k]]
    elif ties == "heavy":
        scores = np.round(scores * 8) / 8
    return scores, labels


def _brute_force(scores, labels, p_target):
    """Loop over every threshold (distinct scores and +inf), accept if score >= t."""
    tar, non = scores[labels == 1], scores[labels == 0]
    points = [((tar < t).mean(), (non >= t).mean()) for t in [*np.unique(scores), np.inf]]
    pm, pf = np.array(points).T
    dcf = (p_target * pm + (1 - p_target) * pf).min() / min(p_target, 1 - p_target)
    return dcf, np.minimum(pm, pf).max(), np.maximum(pm, pf).min()


def _sklearn(scores, labels, p_target):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    dcf = (p_target * fnr + (1 - p_target) * fpr).min() / min(p_target, 1 - p_target)
    return (fpr[i] + fnr[i]) / 2, dcf


@pytest.mark.parametrize("ties", ["none", "pairs", "heavy"])
def test_against_brute_force(rng, ties):
    scores, labels = _trials(rng, n=1500, ties=ties)
    eer, _ = compute_eer(scores, labels)
    for p in PRIORS:
        dcf, lo, hi = _brute_force(scores, labels, p)
        assert compute_min_dcf(scores, labels, p)[0] == pytest.approx(dcf, abs=1e-12)
    # The EER lies between the best single-threshold bounds, whatever the ties.
    assert lo - 1e-12 <= eer <= hi + 1e-12


@pytest.mark.parametrize("ties", ["none", "pairs"])
@pytest.mark.parametrize("p_tar", [0.05, 0.5])
def test_against_sklearn(rng, ties, p_tar):
    scores, labels = _trials(rng, n=4000, p_tar=p_tar, ties=ties)
    n_min = min(labels.sum(), (1 - labels).sum())
    for p in PRIORS:
        ref_eer, ref_dcf = _sklearn(scores, labels, p)
        assert compute_min_dcf(scores, labels, p)[0] == pytest.approx(ref_dcf, abs=1e-12)
    assert abs(compute_eer(scores, labels)[0] - ref_eer) <= 1 / n_min


def test_det_curve_is_sklearn_roc(rng):
    scores, labels = _trials(rng, n=1000, ties="heavy")
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    curve = det_curve(scores, labels)
    np.testing.assert_allclose(curve.p_fa, np.r_[fpr[:0:-1], fpr[0]], atol=1e-12)
    np.testing.assert_allclose(curve.p_miss, 1 - np.r_[tpr[:0:-1], tpr[0]], atol=1e-12)
    np.testing.assert_array_equal(curve.thresholds[:-1], thr[:0:-1])


def test_ties_are_never_split(rng):
    scores, labels = _trials(rng, n=3000, ties="heavy")
    perm = rng.permutation(len(scores))
    assert evaluate(scores, labels) == evaluate(scores[perm], labels[perm])
    _, thr = compute_min_dcf(scores, labels, 0.05)
    # The threshold is one of the scores (or above all): ties fall on one side together.
    assert thr in set(scores.tolist()) or thr > scores.max()


@pytest.mark.parametrize("ties", ["none", "pairs"])
def test_against_speechbrain(rng, ties):
    torch = pytest.importorskip("torch")
    metric_stats = pytest.importorskip("speechbrain.utils.metric_stats")
    scores, labels = _trials(rng, n=2000, ties=ties)
    pos = torch.tensor(scores[labels == 1], dtype=torch.float64)
    neg = torch.tensor(scores[labels == 0], dtype=torch.float64)
    n_min = min(len(pos), len(neg))
    assert abs(compute_eer(scores, labels)[0] - metric_stats.EER(pos, neg)[0]) <= 1 / n_min
    for p in (0.01, 0.05):
        sb_dcf, _ = metric_stats.minDCF(pos, neg, p_target=p)
        ours = compute_min_dcf(scores, labels, p)[0]
        assert ours == pytest.approx(sb_dcf / min(p, 1 - p), rel=1e-6)  # SB is unnormalised


def test_exact_cases():
    labels = np.array([0, 0, 0, 1, 1])
    separated = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert compute_eer(separated, labels)[0] == 0.0
    assert compute_eer(-separated, labels)[0] == 1.0
    for p in PRIORS:
        assert compute_min_dcf(separated, labels, p)[0] == 0.0
        assert compute_min_dcf(-separated, labels, p)[0] == 1.0
    # Everything tied: the only operating points are accept-all and reject-all.
    assert compute_eer(np.zeros(5), labels)[0] == pytest.approx(0.5)
    assert compute_min_dcf(np.zeros(5), labels, 0.01)[0] == 1.0


def test_hand_worked_eer_and_threshold():
    # Targets 0.4 0.6 0.9, nontargets 0.1 0.5 0.7: at t=0.55 one miss (1/3), one fa (1/3).
    scores = np.array([0.4, 0.6, 0.9, 0.1, 0.5, 0.7])
    labels = np.array([1, 1, 1, 0, 0, 0])
    eer, thr = compute_eer(scores, labels)
    assert eer == pytest.approx(1 / 3) and thr == 0.6


@pytest.mark.parametrize("labels", [np.zeros(4), np.ones(4)])
def test_one_class_raises_with_counts(labels):
    n_tar = int(labels.sum())
    for fn in (compute_eer, compute_min_dcf, compute_cllr, compute_act_dcf):
        with pytest.raises(ValueError, match=f"{n_tar} target and {4 - n_tar} nontarget"):
            fn(np.arange(4.0), labels)


def test_input_errors():
    with pytest.raises(ValueError, match="differ in length"):
        compute_eer([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="NaN"):
        compute_eer([1.0, np.nan], [1, 0])
    with pytest.raises(ValueError, match="labels must be"):
        compute_eer([1.0, 2.0], [1, 2])
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf([1.0, 2.0], [1, 0], p_target=1.0)


def test_cllr_hand_worked():
    labels = np.array([1, 0])
    assert compute_cllr([0.0, 0.0], labels) == pytest.approx(1.0)
    assert compute_cllr([np.log(3), -np.log(3)], labels) == pytest.approx(np.log2(4 / 3))
    assert compute_cllr([50.0, -50.0], labels) == pytest.approx(0.0, abs=1e-12)


def test_act_dcf_hand_worked():
    # p=0.01: Bayes threshold log(99) = 4.595: one miss (4), one false alarm (4.6).
    # p=0.5: threshold 0: no miss, one false alarm (4.6).
    llrs = np.array([5.0, 4.0, -1.0, 4.6])
    labels = np.array([1, 1, 0, 0])
    expected = (0.01 * 0.5 + 0.99 * 0.5) / 0.01
    assert compute_act_dcf(llrs, labels, 0.01) == pytest.approx(expected)
    assert compute_act_dcf(llrs, labels, 0.5) == pytest.approx(0.5)


def test_linear_time_shape(rng):
    """A million trials stays well within memory and time (the benchmark has the figures)."""
    scores, labels = _trials(rng, n=1_000_000)
    out = evaluate(scores, labels)
    assert 0 < out["eer"] < 0.5 and set(out) >= {"min_dcf_0.01", "min_dcf_0.05"}
