"""Calibration against scikit-learn's logistic regression and a known-LLR Gaussian model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from r2n_audio.errors import DataFormatError
from r2n_audio.scoring.calibration import Calibration, fit_calibration
from r2n_audio.scoring.metrics import compute_cllr


def _gaussian(rng, n_tar=2000, n_non=6000, mu=1.5):
    """Targets N(mu, 1), nontargets N(-mu, 1): the true LLR is 2 mu s."""
    scores = np.r_[rng.normal(mu, 1, n_tar), rng.normal(-mu, 1, n_non)]
    return scores, np.r_[np.ones(n_tar), np.zeros(n_non)].astype(np.int8)


def test_recovers_true_llr(rng):
    scores, labels = _gaussian(rng, n_tar=20000, n_non=20000)
    cal = fit_calibration(scores, labels)
    assert cal.score_weight == pytest.approx(3.0, rel=0.05)
    assert cal.bias == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("prior", [0.5, 0.1])
def test_matches_sklearn_weighted_logistic_regression(rng, prior):
    scores, labels = _gaussian(rng)
    quality = {"q": rng.normal(3.0, 2.0, len(scores)) + 0.5 * labels}
    n_tar, n_non = labels.sum(), len(labels) - labels.sum()
    weights = np.where(labels == 1, prior / n_tar, (1 - prior) / n_non) * len(labels)
    ref = LogisticRegression(C=1e8, tol=1e-10, max_iter=10000)
    ref.fit(np.c_[scores, quality["q"]], labels, sample_weight=weights)
    cal = fit_calibration(scores, labels, quality, prior=prior)
    # sklearn models the posterior log-odds at the prior: LLR = logit - logit(prior).
    np.testing.assert_allclose([cal.score_weight, cal.quality_weights["q"]], ref.coef_[0],
                               rtol=1e-3)
    assert cal.bias == pytest.approx(ref.intercept_[0] - np.log(prior / (1 - prior)), abs=1e-3)


def test_calibration_lowers_cllr_on_held_out_trials(rng):
    """Judged on trials it was not fitted on, against the true LLR (2 mu s = 3 s)."""
    scores, labels = _gaussian(rng)
    held_scores, held_labels = _gaussian(rng)  # a fresh draw of the same system
    cal = fit_calibration(0.2 * scores + 1.0, labels)  # badly scaled and shifted
    held_raw = 0.2 * held_scores + 1.0
    calibrated = compute_cllr(cal.apply(held_raw), held_labels)
    ideal = compute_cllr(3.0 * held_scores, held_labels)
    assert calibrated < compute_cllr(held_raw, held_labels)
    assert calibrated == pytest.approx(ideal, abs=0.01)


def test_json_round_trip(tmp_path):
    cal = Calibration(2.0, -0.5, {"enroll_norm": 0.1}, prior=0.2)
    cal.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back == cal
    s = np.array([0.0, 1.0])
    np.testing.assert_allclose(back.apply(s, {"enroll_norm": np.array([10.0, 0.0])}),
                               [0.5, 1.5])
    with pytest.raises(ValueError, match="enroll_norm"):
        back.apply(s)


def test_bad_files(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        Calibration.load(tmp_path / "none.json")
    (tmp_path / "a.json").write_text("{\n oops")
    with pytest.raises(DataFormatError, match="invalid JSON"):
        Calibration.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"score_weight": 1}))
    with pytest.raises(DataFormatError, match="not an r2n-audio calibration"):
        Calibration.load(tmp_path / "b.json")


def test_fit_needs_both_classes():
    with pytest.raises(ValueError, match="0 nontarget"):
        fit_calibration(np.ones(3), np.ones(3))
