"""Helpers for the training tests: tiny modules and trainers on the session's tiny corpus."""

from __future__ import annotations

import warnings

import pytest

# Lightning's advice about worker counts and tiny logging intervals is noise for 4-step runs.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")


@pytest.fixture
def trainer_kwargs(tmp_path):
    """Quiet, CPU-only, deterministic Trainer arguments writing under ``tmp_path``."""
    return dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=str(tmp_path),
                num_sanity_val_steps=0, deterministic=True)
