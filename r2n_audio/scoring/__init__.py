"""Scoring: cosine / AS-Norm trial scoring, calibration, metrics and DET plots.

Pure numpy (scipy for calibration fitting, matplotlib for plots, both imported lazily); nothing
here imports torch or Lightning.
"""

from r2n_audio.scoring.cosine import as_norm, cosine_score_trials, score_trials
from r2n_audio.scoring.metrics import (
    compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf, det_curve, evaluate)

__all__ = ["as_norm", "cosine_score_trials", "score_trials", "compute_act_dcf", "compute_cllr",
           "compute_eer", "compute_min_dcf", "det_curve", "evaluate"]
