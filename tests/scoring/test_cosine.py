"""Cosine scoring and AS-Norm against a naive per-trial loop (torch cosine similarity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2n_audio.data.embeddings import save_embeddings
from r2n_audio.data.manifests import Trials
from r2n_audio.errors import DataFormatError
from r2n_audio.scoring import cosine
from r2n_audio.scoring.cosine import (
    cosine_score_trials, load_cohort, load_mean, normalize, score_trials)


@pytest.fixture
def setup(rng):
    keys = [f"s{i}/u{j}" for i in range(6) for j in range(3)]
    emb = {k: rng.standard_normal(12).astype(np.float32) + 1.0 for k in keys}
    pairs = [(a, b) for a in keys for b in keys if a < b][::3]
    trials = Trials([a for a, _ in pairs], [b for _, b in pairs],
                    np.array([a[:2] == b[:2] for a, b in pairs]))
    cohort = rng.standard_normal((40, 12)).astype(np.float32) + 0.5
    mean = np.full(12, 0.8, dtype=np.float32)
    return trials, emb, cohort, mean


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(torch.tensor(a, dtype=torch.float64),
                                                       torch.tensor(b, dtype=torch.float64),
                                                       dim=-1))


def _naive_as_norm(trials, emb, cohort, mean, top_n):
    """One trial at a time: score it, score both sides against the whole cohort, normalise."""
    out = []
    for e, t in zip(trials.enroll, trials.test):
        x_e, x_t = emb[e] - mean, emb[t] - mean
        s = _cos(x_e, x_t)
        stats = []
        for x in (x_e, x_t):
            top = sorted((_cos(x, c - mean) for c in cohort), reverse=True)[:top_n]
            stats.append((np.mean(top), np.std(top)))
        (mu_e, sd_e), (mu_t, sd_t) = stats
        out.append(0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t))
    return np.array(out)


@pytest.mark.parametrize("matrix_limit", [1 << 24, 0])  # (U, U) product, chunked gather
def test_cosine_matches_naive(setup, monkeypatch, matrix_limit):
    monkeypatch.setattr(cosine, "_MATRIX_LIMIT", matrix_limit)
    trials, emb, _, mean = setup
    scores, missing = cosine_score_trials(trials, emb, mean=mean)
    expected = [_cos(emb[e] - mean, emb[t] - mean) for e, t in zip(trials.enroll, trials.test)]
    assert missing == []
    np.testing.assert_allclose(scores, expected, atol=1e-6)


@pytest.mark.parametrize("top_n", [5, 40])
def test_as_norm_matches_naive_loop(setup, top_n):
    trials, emb, cohort, mean = setup
    scores, _ = cosine_score_trials(trials, emb, mean=mean, cohort=cohort, top_n=top_n)
    np.testing.assert_allclose(scores, _naive_as_norm(trials, emb, cohort, mean, top_n),
                               atol=1e-5)


def test_top_n_beyond_cohort_uses_whole_cohort(setup, caplog):
    trials, emb, cohort, _ = setup
    capped, _ = cosine_score_trials(trials, emb, cohort=cohort, top_n=1000)
    full, _ = cosine_score_trials(trials, emb, cohort=cohort, top_n=len(cohort))
    np.testing.assert_allclose(capped, full)
    assert "exceeds the cohort size" in caplog.text


def test_missing_keys_give_nan(setup):
    trials, emb, cohort, _ = setup
    gone = trials.test[0]
    del emb[gone]
    result = score_trials(trials, emb, cohort=cohort, top_n=5)
    assert result.missing_keys == [gone]
    hit = np.array([gone in (e, t) for e, t in zip(trials.enroll, trials.test)])
    assert np.isnan(result.scores[hit]).all() and np.isfinite(result.scores[~hit]).all()
    assert (result.valid == ~hit).all()


def test_normalize_unit_rows(rng):
    raw = rng.standard_normal((5, 4))
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    x = normalize(raw, mean=mean)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    # the direction of the centred rows (fails if the mean were ignored)
    expected = torch.nn.functional.normalize(torch.tensor(raw - mean), dim=1).numpy()
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert not normalize(np.zeros((1, 4))).any()  # a zero row stays zero


@pytest.mark.parametrize("scale", [1e-30, 1e30, 1e-300, 1e300])
def test_cosine_is_scale_invariant(setup, scale):
    """Issue 11 item 8: a store scaled by 1e-30 gave "cosines" near 1e17, by 1e30 zeros."""
    trials, emb, cohort, mean = setup
    dtype = np.float32 if abs(np.log10(scale)) < 38 else np.float64
    scaled = {k: (v.astype(np.float64) * scale).astype(dtype) for k, v in emb.items()}
    plain, _ = cosine_score_trials(trials, emb, mean=mean)
    again, _ = cosine_score_trials(trials, scaled, mean=mean.astype(np.float64) * scale)
    np.testing.assert_allclose(again, plain, atol=1e-6)
    normed, _ = cosine_score_trials(trials, emb, cohort=cohort, top_n=5)
    normed_scaled, _ = cosine_score_trials(trials, scaled, cohort=cohort.astype(np.float64) * scale,
                                           top_n=5)
    np.testing.assert_allclose(normed_scaled, normed, atol=1e-4)


@pytest.mark.parametrize("cohort_size,top_n", [(1, 300), (40, 1), (5, 0)])
def test_as_norm_needs_two_cohort_scores(setup, cohort_size, top_n):
    """Issue 11 item 9: one cohort score has std 0 (clamped to 1e-12: scores near 1e11)."""
    trials, emb, cohort, _ = setup
    with pytest.raises(ValueError, match="at least 2"):
        cosine_score_trials(trials, emb, cohort=cohort[:cohort_size], top_n=top_n)


def test_mean_and_cohort_loaders(tmp_path, rng):
    vectors = {f"k{i}": rng.standard_normal(6).astype(np.float32) for i in range(4)}
    save_embeddings(tmp_path / "store.npz", vectors)
    np.testing.assert_allclose(load_mean(tmp_path / "store.npz"),
                               np.mean(list(vectors.values()), axis=0), rtol=1e-6)
    assert load_cohort(tmp_path / "store.npz").shape == (4, 6)
    np.save(tmp_path / "m.npy", np.ones(6))
    assert load_mean(tmp_path / "m.npy").shape == (6,)
    with pytest.raises(DataFormatError, match="matrix"):
        load_cohort(tmp_path / "m.npy")
    np.save(tmp_path / "bad.npy", np.full((2, 6), np.nan))
    with pytest.raises(DataFormatError, match="finite"):
        load_cohort(tmp_path / "bad.npy")
