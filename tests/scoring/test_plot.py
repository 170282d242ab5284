"""DET plot: a PNG whose axes are normal deviates (checked against scipy's norm.ppf)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

pytest.importorskip("matplotlib")

from r2n_audio.scoring import plot  # noqa: E402


def test_writes_png_atomically(tmp_path, rng, monkeypatch):
    labels = (rng.random(20000) < 0.2).astype(int)
    scores = rng.standard_normal(20000) + 2 * labels
    drawn = {}
    real_thin = plot._thin
    monkeypatch.setattr(plot, "_thin", lambda x, y: drawn.setdefault("xy", real_thin(x, y)))
    out = tmp_path / "det.png"
    plot.plot_det(out, {"sys": (scores, labels)}, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["det.png"]
    x, y = drawn["xy"]
    assert len(x) <= 2 * plot._MAX_POINTS
    # Every drawn point is (probit(P_fa), probit(P_miss)) of a real operating point.
    fa, miss = norm.cdf(x), norm.cdf(y)
    tar, non = scores[labels == 1], scores[labels == 0]
    t = np.quantile(tar, miss[len(miss) // 2])
    assert abs((non >= t).mean() - fa[len(fa) // 2]) < 0.02
