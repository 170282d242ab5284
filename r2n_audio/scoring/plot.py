"""DET curves on normal-deviate axes, written to PNG (matplotlib, imported lazily).

The axes are ``probit(P_fa)`` against ``probit(P_miss)`` (``probit`` = inverse standard normal
CDF), on which Gaussian score distributions give straight lines; ticks are labelled in percent.
Uses matplotlib's object API (no pyplot), so it changes no global backend or state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from r2n_audio.atomic import atomic_path
from r2n_audio.scoring.metrics import compute_eer, det_curve

__all__ = ["plot_det"]

_TICKS = np.array([1e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
_MAX_POINTS = 4000  # more is invisible at PNG resolution and slow to draw


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the points that move by a visible step (1/_MAX_POINTS of the axis range)."""
    if len(x) <= _MAX_POINTS:
        return x, y
    step = (np.ptp(x) + np.ptp(y)) / _MAX_POINTS
    grid = np.round(np.c_[x, y] / max(step, 1e-12)).astype(np.int64)
    keep = np.r_[True, (np.diff(grid, axis=0) != 0).any(axis=1)]
    keep[-1] = True
    return x[keep], y[keep]


def _label(p: float) -> str:
    return f"{100 * p:g}"


def plot_det(path: str | os.PathLike, systems: Mapping[str, tuple[np.ndarray, np.ndarray]],
             title: str | None = None) -> None:
    """Draw one DET curve per system and write a PNG atomically.

    Parameters
    ----------
    path : str or PathLike
        Output ``.png``.
    systems : dict of str to (scores (N,), labels (N,))
        Curve name (legend, with the EER appended) to its trials.
    title : str, optional
    """
    from scipy.stats import norm
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    floor = 0.01  # lower axis limit: the smallest rate the trial counts can resolve
    for name, (scores, labels) in systems.items():
        curve = det_curve(scores, labels)
        n_min = min(int(np.sum(np.asarray(labels) == 1)), int(np.sum(np.asarray(labels) == 0)))
        floor = max(min(floor, 0.5 / n_min), 1e-4) if n_min else floor
        x = norm.ppf(np.clip(curve.p_fa, 1e-6, 1 - 1e-6))
        y = norm.ppf(np.clip(curve.p_miss, 1e-6, 1 - 1e-6))
        eer, _ = compute_eer(scores, labels)
        ax.plot(*_thin(x, y), label=f"{name} (EER {100 * eer:.2f}%)")
        ax.plot([norm.ppf(max(eer, 1e-6))] * 2, [norm.ppf(max(eer, 1e-6))] * 2, "k.")
    ticks = _TICKS[_TICKS >= floor * 0.999]
    lim = norm.ppf([ticks[0], 0.5])
    ax.plot(lim, lim, color="0.7", lw=0.8, ls="--")  # the P_miss = P_fa diagonal
    for setter, limit in ((ax.set_xticks, ax.set_xlim), (ax.set_yticks, ax.set_ylim)):
        setter(norm.ppf(ticks), [_label(t) for t in ticks])
        limit(*lim)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right", fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
