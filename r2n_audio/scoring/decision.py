"""Decide one pair: same speaker or not, and by which threshold.

The layer behind ``r2n-audio verify`` and :meth:`r2n_audio.inference.Embedder.verify`. A
threshold comes, in this order, from the caller (a cosine threshold), a calibration (accept when
the log-likelihood ratio is >= 0), or the model bundle's ``meta["threshold"]``; a bundle says
where its threshold was set in ``meta["threshold_source"]`` (the mini recipe writes "the EER
point of plain cosine on the mini corpus's held-out synthetic voices"), and the decision carries
that, because a threshold set on one kind of audio says little about another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from r2n_audio.errors import R2NError
from r2n_audio.scoring.calibration import Calibration
from r2n_audio.scoring.cosine import normalize

__all__ = ["Decision", "cosine_similarity", "decide", "bundle_threshold"]


@dataclass(frozen=True)
class Decision:
    """The outcome of a verification.

    Attributes
    ----------
    score : float
        Cosine of the two embeddings (after the bundle's normalisation).
    llr : float or None
        Log-likelihood ratio, when a calibration was applied.
    same : bool or None
        Same speaker; ``None`` when no threshold was available.
    threshold : float or None
        The threshold used (on ``llr`` with a calibration, else on ``score``).
    source : str
        Where the threshold comes from, in words.
    """

    score: float
    llr: float | None
    same: bool | None
    threshold: float | None
    source: str


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings (D,), scale-safe (see :func:`~r2n_audio.scoring.cosine.normalize`).

    Raises
    ------
    ValueError
        A non-finite vector (never scored) or vectors of different sizes.
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embeddings of different sizes: {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("an embedding is NaN or Inf; it cannot be scored")
    x, y = normalize(np.stack([a, b])).astype(np.float64)
    return float(x @ y)


def bundle_threshold(meta: Mapping[str, Any] | None) -> tuple[float, str] | None:
    """``(threshold, source)`` from a bundle's ``meta``, or ``None`` when it has none."""
    meta = meta or {}
    value = meta.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return None
    where = meta.get("threshold_source")
    source = (f"bundle, calibrated on {where}" if isinstance(where, str) and where else
              "bundle; where it was calibrated is not recorded: check it on your own audio")
    return float(value), source


def decide(score: float, threshold: float | None = None,
           calibration: Calibration | str | os.PathLike | None = None,
           meta: Mapping[str, Any] | None = None) -> Decision:
    """Decide a pair from its cosine ``score``.

    Parameters
    ----------
    score : float
        Cosine similarity.
    threshold : float, optional
        Accept when ``score >= threshold``.
    calibration : Calibration or path, optional
        Accept when its log-likelihood ratio is >= 0 (a plain score calibration: quality
        measures need a trial list, see :mod:`r2n_audio.scoring.trials`).
    meta : mapping, optional
        A bundle's ``meta``: its ``threshold`` is used when neither of the above is given.

    Raises
    ------
    R2NError
        Both ``threshold`` and ``calibration``, or a calibration that needs quality measures.
    """
    if not np.isfinite(score):
        raise R2NError(f"score {score} is not finite; nothing can be decided")
    if threshold is not None and calibration is not None:
        raise R2NError("give a threshold or a calibration, not both")
    if calibration is not None:
        cal = calibration if isinstance(calibration, Calibration) else Calibration.load(calibration)
        name = "calibration" if isinstance(calibration, Calibration) else f"calibration {calibration}"
        if cal.quality_weights:
            raise R2NError(f"{name}: needs quality measures {sorted(cal.quality_weights)}; a "
                           f"single pair supports plain score calibrations (fit one without)")
        llr = float(cal.apply(np.array([score]))[0])
        return Decision(score, llr, llr >= 0.0, 0.0, f"LLR >= 0, {name}")
    if threshold is not None:
        return Decision(score, None, score >= threshold, float(threshold), "given threshold")
    found = bundle_threshold(meta)
    if found is None:
        return Decision(score, None, None, None, "no threshold")
    return Decision(score, None, score >= found[0], found[0], found[1])
