"""Cosine scoring of trial lists, with mean subtraction and AS-Norm.

Every embedding (trial utterances, cohort) is centred with an optional mean vector (usually the
mean of the training-set embeddings) and length-normalised, so a score is the cosine
``s(e, t) = <e, t> / (|e| |t|)`` of the centred vectors.

Adaptive symmetric normalisation (AS-Norm; Matejka et al., Interspeech 2017), as in WeSpeaker::

    s' = 1/2 [(s - mu_e) / sigma_e + (s - mu_t) / sigma_t]

where ``mu_x`` and ``sigma_x`` (population std) are taken over the ``top_n`` highest cosine
scores of utterance ``x`` against the cohort. The statistics are computed once per *unique
utterance* with one (U, D) x (D, C) product, never per trial, so a Vox1-H-sized list (550k
trials, 1,190 utterances, a 6,000-vector cohort) takes about a second.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r2n_audio.data.embeddings import load_embeddings
from r2n_audio.data.manifests import Trials
from r2n_audio.errors import DataFormatError

__all__ = ["ScoredTrials", "score_trials", "cosine_score_trials", "normalize", "cohort_stats",
           "check_as_norm", "as_norm", "load_mean", "load_cohort"]

logger = logging.getLogger(__name__)

_TRIAL_CHUNK = 1 << 16  # trials per gathered block: bounds memory to ~2 x 64k x D floats
_COHORT_CHUNK = 2048  # utterances per block against the cohort
_MATRIX_LIMIT = 1 << 24  # largest U x U score matrix (64 MiB of float32) built at once


def normalize(vectors: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Centre with ``mean`` (D,) and scale rows to unit length.

    Parameters
    ----------
    vectors : np.ndarray (N, D)
    mean : np.ndarray (D,), optional

    Returns
    -------
    np.ndarray (N, D) float32
        Rows of norm 1 (a zero row stays zero), whatever the scale of the input: the centring
        and the norms are computed in float64 on rows first divided by their largest magnitude,
        so a store scaled by 1e-30 or 1e30 scores as the unscaled one (in float32 the squares
        underflow to 0 or overflow to inf).
    """
    x = np.asarray(vectors, dtype=np.float64)
    if mean is not None:
        x = x - np.asarray(mean, dtype=np.float64)
    peak = np.abs(x).max(axis=1, keepdims=True) if x.size else np.ones((x.shape[0], 1))
    x = x / np.where(peak > 0, peak, 1.0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def cohort_stats(vectors: np.ndarray, cohort: np.ndarray,
                 top_n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of each vector's ``top_n`` highest cohort scores.

    Parameters
    ----------
    vectors : np.ndarray (U, D)
        Normalised utterance embeddings (see :func:`normalize`).
    cohort : np.ndarray (C, D)
        Normalised cohort embeddings.
    top_n : int
        Cohort scores kept per utterance; clipped to C.

    Returns
    -------
    mean, std : np.ndarray (U,) float64

    Raises
    ------
    ValueError
        A cohort of fewer than 2 vectors or ``top_n`` below 2: the standard deviation of one
        score is 0, and dividing by it (floored at 1e-12) blows scores up to ~1e11.
    """
    n_cohort = cohort.shape[0]
    check_as_norm(n_cohort, top_n)
    if top_n > n_cohort:
        logger.warning("top-n %d exceeds the cohort size %d; using the whole cohort",
                       top_n, n_cohort)
        top_n = n_cohort
    mean = np.empty(vectors.shape[0])
    std = np.empty(vectors.shape[0])
    for start in range(0, vectors.shape[0], _COHORT_CHUNK):
        block = vectors[start:start + _COHORT_CHUNK] @ cohort.T  # (b, C)
        top = np.partition(block, n_cohort - top_n, axis=1)[:, n_cohort - top_n:]
        mean[start:start + len(block)] = top.mean(axis=1, dtype=np.float64)
        std[start:start + len(block)] = top.std(axis=1, dtype=np.float64)
    return mean, np.maximum(std, 1e-12)


def check_as_norm(cohort_size: int, top_n: int) -> None:
    """Refuse an AS-Norm that cannot work: a cohort or ``top_n`` under 2 vectors.

    Raises
    ------
    ValueError
        Naming the number and the fix.
    """
    if cohort_size < 2:
        raise ValueError(f"the AS-Norm cohort has {cohort_size} vector(s); it needs at least 2 "
                         f"(usually hundreds: one mean embedding per training speaker)")
    if top_n < 2:
        raise ValueError(f"AS-Norm top-N must be at least 2 (the standard deviation of "
                         f"{top_n} score(s) is 0), got {top_n}")


def as_norm(scores: np.ndarray, enroll_mean: np.ndarray, enroll_std: np.ndarray,
            test_mean: np.ndarray, test_std: np.ndarray) -> np.ndarray:
    """AS-Norm: ``1/2 [(s - mu_e) / sigma_e + (s - mu_t) / sigma_t]``, elementwise (T,)."""
    return 0.5 * ((scores - enroll_mean) / enroll_std + (scores - test_mean) / test_std)


@dataclass
class ScoredTrials:
    """Scores of a trial list and what was computed on the way.

    Attributes
    ----------
    scores : np.ndarray (T,) float64
        Cosine (or AS-Norm) scores; NaN where an embedding is missing.
    raw : np.ndarray (T,) float64
        Plain cosine scores before AS-Norm (NaN where missing).
    missing_keys : list of str
        Trial utterances without an embedding, in order of first appearance.
    keys : list of str
        Unique utterances that have an embedding (row order of the per-utterance arrays).
    enroll_idx, test_idx : np.ndarray (T,) int64
        Row of each trial's enrolment and test utterance in ``keys``; -1 where missing.
    norms : np.ndarray (U,)
        Norms of the raw embeddings (a quality measure for calibration).
    cohort_mean : np.ndarray (U,), optional
        Top-N cohort mean per utterance when AS-Norm ran (another quality measure).
    """

    scores: np.ndarray
    raw: np.ndarray
    missing_keys: list[str]
    keys: list[str]
    enroll_idx: np.ndarray
    test_idx: np.ndarray
    norms: np.ndarray
    cohort_mean: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        """(T,) bool: trials whose two embeddings exist."""
        return (self.enroll_idx >= 0) & (self.test_idx >= 0)


def _pair_dots(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products ``vectors[a[i]] . vectors[b[i]]`` for every trial i.

    With few utterances (a test set like Vox1-H has ~1k) one (U, U) product and a lookup beat
    gathering two (T, D) blocks; otherwise gather in bounded-memory chunks.
    """
    if vectors.shape[0] ** 2 <= _MATRIX_LIMIT:
        return (vectors @ vectors.T)[a, b].astype(np.float64)
    out = np.empty(len(a))
    for start in range(0, len(a), _TRIAL_CHUNK):
        sl = slice(start, start + _TRIAL_CHUNK)
        out[sl] = np.einsum("ij,ij->i", vectors[a[sl]], vectors[b[sl]])
    return out


def _index(trials: Trials, embeddings: dict[str, np.ndarray]):
    keys = [k for k in trials.keys() if k in embeddings]
    missing = [k for k in trials.keys() if k not in embeddings]
    row = {k: i for i, k in enumerate(keys)}
    enroll_idx = np.fromiter((row.get(k, -1) for k in trials.enroll), np.int64, len(trials))
    test_idx = np.fromiter((row.get(k, -1) for k in trials.test), np.int64, len(trials))
    return keys, missing, enroll_idx, test_idx


def score_trials(trials: Trials, embeddings: dict[str, np.ndarray],
                 mean: np.ndarray | None = None, cohort: np.ndarray | None = None,
                 top_n: int = 300) -> ScoredTrials:
    """Cosine-score every trial whose embeddings exist, with optional AS-Norm.

    Parameters
    ----------
    trials : Trials
    embeddings : dict of str to np.ndarray (D,)
    mean : np.ndarray (D,), optional
        Subtracted from every embedding (and the cohort) before length normalisation.
    cohort : np.ndarray (C, D), optional
        Raw cohort embeddings; enables AS-Norm with the ``top_n`` highest scores.
    top_n : int

    Returns
    -------
    ScoredTrials
    """
    keys, missing, enroll_idx, test_idx = _index(trials, embeddings)
    dim = len(next(iter(embeddings.values()))) if embeddings else 0
    raw_vectors = np.stack([embeddings[k] for k in keys]) if keys else np.zeros((0, dim))
    vectors = normalize(raw_vectors, mean)
    valid = (enroll_idx >= 0) & (test_idx >= 0)
    raw = np.full(len(trials), np.nan)
    raw[valid] = _pair_dots(vectors, enroll_idx[valid], test_idx[valid])
    scores, top_mean = raw, None
    if cohort is not None and len(keys):
        top_mean, top_std = cohort_stats(vectors, normalize(cohort, mean), top_n)
        e, t = enroll_idx[valid], test_idx[valid]
        scores = raw.copy()
        scores[valid] = as_norm(raw[valid], top_mean[e], top_std[e], top_mean[t], top_std[t])
    return ScoredTrials(scores, raw, missing, keys, enroll_idx, test_idx,
                        np.linalg.norm(raw_vectors, axis=1), top_mean)


def cosine_score_trials(trials: Trials, embeddings: dict[str, np.ndarray],
                        mean: np.ndarray | None = None, cohort: np.ndarray | None = None,
                        top_n: int = 300) -> tuple[np.ndarray, list[str]]:
    """Scores (T,) (NaN where an embedding is missing) and the missing keys.

    A thin front to :func:`score_trials` for callers that only need the scores.
    """
    result = score_trials(trials, embeddings, mean=mean, cohort=cohort, top_n=top_n)
    return result.scores, result.missing_keys


def _matrix_or_store(path: str | os.PathLike, what: str) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataFormatError(path, f"cannot read the {what}: {err}") from None
    else:
        array = np.stack(list(load_embeddings(path).values()))
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise DataFormatError(path, f"the {what} must be finite numbers")
    return np.asarray(array, dtype=np.float64)  # scores are normalised in float64 anyway


def load_mean(path: str | os.PathLike) -> np.ndarray:
    """A mean vector (D,): a ``.npy`` vector, or the mean of an embedding store's vectors."""
    array = _matrix_or_store(path, "mean vector")
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1:
        raise DataFormatError(path, f"the mean must be a vector (D,), got shape {array.shape}")
    return array


def load_cohort(path: str | os.PathLike) -> np.ndarray:
    """Cohort embeddings (C, D): a ``.npy`` matrix or any embedding store."""
    array = _matrix_or_store(path, "cohort")
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataFormatError(path, f"the cohort must be a matrix (C, D), got shape "
                                    f"{array.shape}")
    return array
