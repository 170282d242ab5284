"""DET plot: a PNG whose points are scikit-learn ROC points on normal-deviate axes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

pytest.importorskip("matplotlib")

from r2n_audio.scoring import plot  # noqa: E402


def test_writes_png_of_probit_roc_points(tmp_path, rng, monkeypatch):
    labels = (rng.random(20000) < 0.2).astype(int)
    scores = rng.standard_normal(20000) + 2 * labels
    drawn = {}
    real_thin = plot._thin
    monkeypatch.setattr(plot, "_thin", lambda x, y: drawn.setdefault("xy", real_thin(x, y)))
    out = tmp_path / "det.png"
    plot.plot_det(out, {"sys": (scores, labels)}, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["det.png"]  # no temp file left
    x, y = drawn["xy"]
    assert 100 < len(x) <= 2 * plot._MAX_POINTS
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    ref = {(round(a, 9), round(b, 9)) for a, b in zip(norm.ppf(np.clip(fpr, 1e-6, 1 - 1e-6)),
                                                       norm.ppf(np.clip(1 - tpr, 1e-6, 1 - 1e-6)))}
    assert all((round(a, 9), round(b, 9)) in ref for a, b in zip(x, y))
