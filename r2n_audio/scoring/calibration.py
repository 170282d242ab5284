"""Linear logistic-regression calibration of scores to log-likelihood ratios, with optional
quality measures (WeSpeaker's QMF idea).

The calibrated score is ``llr = a s + sum_i c_i q_i + b`` with ``s`` the raw score and ``q_i``
quality measures (embedding norms, top-N cohort means, durations, ...). The parameters minimise
the prior-weighted cross-entropy (BOSARIS / Brummer's ``Cllr`` at prior ``pi``)::

      pi     / N_tar  sum_tar log(1 + exp(-(llr + logit pi)))
    + (1 - pi) / N_non  sum_non log(1 + exp(  llr + logit pi ))

a convex problem solved with L-BFGS on standardised inputs. Parameters are saved as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from r2n_audio.atomic import atomic_write_text
from r2n_audio.errors import DataFormatError

__all__ = ["Calibration", "fit_calibration"]

_FORMAT = "r2n-audio-calibration"


@dataclass
class Calibration:
    """Affine map from a score (and quality measures) to a natural-log likelihood ratio.

    Attributes
    ----------
    score_weight : float
        ``a``.
    bias : float
        ``b``.
    quality_weights : dict of str to float
        ``c_i`` by quality-measure name; empty for plain score calibration.
    prior : float
        Target prior of the training objective.
    """

    score_weight: float
    bias: float
    quality_weights: dict[str, float] = field(default_factory=dict)
    prior: float = 0.5

    def apply(self, scores: np.ndarray,
              quality: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Log-likelihood ratios (T,) of ``scores`` (T,) given each named quality (T,)."""
        llr = self.score_weight * np.asarray(scores, dtype=np.float64) + self.bias
        quality = quality or {}
        absent = [name for name in self.quality_weights if name not in quality]
        if absent:
            raise ValueError(f"calibration needs quality measures {absent}")
        for name, weight in self.quality_weights.items():
            llr = llr + weight * np.asarray(quality[name], dtype=np.float64)
        return llr

    def to_dict(self) -> dict:
        """JSON-ready parameters."""
        return {"format": _FORMAT, "version": 1, "prior": self.prior,
                "score_weight": self.score_weight, "bias": self.bias,
                "quality_weights": dict(self.quality_weights)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Calibration:
        """Inverse of :meth:`to_dict` (raises ``KeyError``/``TypeError`` on bad input)."""
        if data.get("format") != _FORMAT:
            raise KeyError(f"'format' is not '{_FORMAT}'")
        weights = {str(k): float(v) for k, v in dict(data.get("quality_weights", {})).items()}
        return cls(float(data["score_weight"]), float(data["bias"]), weights,
                   float(data.get("prior", 0.5)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read parameters written by :meth:`save`.

        Raises
        ------
        DataFormatError
            Missing file, invalid JSON, or not a calibration file.
        """
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_dict(json.load(f))
        except FileNotFoundError:
            raise DataFormatError(path, "calibration file not found") from None
        except json.JSONDecodeError as err:
            raise DataFormatError(path, f"invalid JSON: {err.msg}", err.lineno) from None
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DataFormatError(path, f"not an r2n-audio calibration file ({err}); make one "
                                        "with `r2n-audio score --fit-calibration`") from None


def _objective(params: np.ndarray, x: np.ndarray, sign: np.ndarray, weight: np.ndarray,
               offset: float) -> tuple[float, np.ndarray]:
    """Weighted logistic loss and gradient; ``sign`` is +1 for targets, -1 for nontargets."""
    z = sign * (x @ params[:-1] + params[-1] + offset)
    loss = float(np.sum(weight * np.logaddexp(0.0, -z)))
    g = -weight * sign * np.exp(-np.logaddexp(0.0, z))  # d loss / d llr = -sign sigmoid(-z)
    return loss, np.r_[x.T @ g, g.sum()]


def fit_calibration(scores: np.ndarray, labels: np.ndarray,
                    quality: Mapping[str, np.ndarray] | None = None,
                    prior: float = 0.5) -> Calibration:
    """Fit :class:`Calibration` on labelled trials by prior-weighted logistic regression.

    Parameters
    ----------
    scores : np.ndarray (T,)
    labels : np.ndarray (T,)
        1 = target, 0 = nontarget; both needed.
    quality : dict of str to np.ndarray (T,), optional
        Quality measures to weigh in (QMF).
    prior : float
        Effective target prior of the objective, in (0, 1).

    Returns
    -------
    Calibration
    """
    from scipy.optimize import minimize  # lazy: only fitting needs scipy

    labels = np.asarray(labels).reshape(-1)
    n_tar, n_non = int((labels == 1).sum()), int((labels == 0).sum())
    if n_tar == 0 or n_non == 0 or n_tar + n_non != labels.size:
        raise ValueError(f"calibration needs labels 0/1 with both classes: {n_tar} target and "
                         f"{n_non} nontarget trials")
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must be in (0, 1), got {prior}")
    names = list(quality or {})
    x = np.column_stack([np.asarray(scores, dtype=np.float64)]
                        + [np.asarray(quality[n], dtype=np.float64) for n in names])
    if not np.isfinite(x).all():
        raise ValueError("scores and quality measures must be finite")
    centre, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-12)
    target = labels == 1
    weight = np.where(target, prior / n_tar, (1.0 - prior) / n_non)
    sign = np.where(target, 1.0, -1.0)
    offset = float(np.log(prior / (1.0 - prior)))
    result = minimize(_objective, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                      args=((x - centre) / scale, sign, weight, offset),
                      options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    w = result.x[:-1] / scale  # back to the original units
    bias = float(result.x[-1] - w @ centre)
    return Calibration(float(w[0]), bias, {n: float(c) for n, c in zip(names, w[1:])}, prior)
