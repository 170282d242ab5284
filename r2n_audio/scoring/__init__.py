"""Scoring: cosine / AS-Norm trial scoring, calibration, metrics, pair decisions and DET plots.

Pure numpy (scipy for calibration fitting, matplotlib for plots, both imported lazily); nothing
here imports torch or Lightning.
"""

from r2n_audio.scoring.cosine import as_norm, cosine_score_trials, score_trials
from r2n_audio.scoring.decision import Decision, cosine_similarity, decide
from r2n_audio.scoring.metrics import (
    compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf, det_curve, evaluate)
from r2n_audio.scoring.trials import TrialScores, score_trial_list

__all__ = ["as_norm", "cosine_score_trials", "score_trials", "compute_act_dcf", "compute_cllr",
           "compute_eer", "compute_min_dcf", "det_curve", "evaluate", "Decision",
           "cosine_similarity", "decide", "TrialScores", "score_trial_list"]
