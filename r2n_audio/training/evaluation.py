"""Validation during training through the one embedding path, :class:`Embedder`.

:class:`~r2n_audio.training.module.SpeakerModule` embeds each validation batch with
:func:`embed_eval_batch` (so long utterances are windowed and silence is dropped exactly as
``r2n-audio embed`` does) and logs :func:`score_trials_eer` each epoch; the recipes embed
their test sets with :func:`r2n_audio.training.recipe.embed_utterances`, the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from r2n_audio.inference.embedder import Embedder

__all__ = ["embedder_for", "embed_eval_batch", "score_trials_eer"]


def embedder_for(module: nn.Module, device: torch.device | str | None = None) -> Embedder:
    """An :class:`Embedder` over a training module's front-end and backbone (shared, not
    copied; both are put in eval mode), on ``device`` (default: the module's)."""
    if device is None:
        device = next(module.parameters()).device
    frontend = module.frontend
    return Embedder(module.backbone, frontend, sample_rate=int(frontend.sample_rate),
                    device=device)


def embed_eval_batch(module: nn.Module, waveforms: torch.Tensor,
                     lengths: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(B, D)`` of a padded validation batch ``(B, N)`` and which rows have one
    ``(B,)`` (a silent utterance has none), as :meth:`Embedder.embed_batch` makes them."""
    return embedder_for(module).embed_batch(waveforms, lengths, return_valid=True)


def score_trials_eer(trials, embeddings: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Plain cosine metrics of ``trials`` for the training log: ``eer`` in percent (a report),
    ``min_dcf_0.01``, ``min_dcf_0.05``; trials with a missing embedding are left out, and no
    trial left gives ``{}``."""
    from r2n_audio.scoring.trials import score_trial_list

    scored = score_trial_list(trials, dict(embeddings))
    if not scored.result.valid.any():
        return {}
    metrics = scored.metrics()
    return {"eer": 100.0 * metrics["eer"], "min_dcf_0.01": metrics["min_dcf_0.01"],
            "min_dcf_0.05": metrics["min_dcf_0.05"]}
