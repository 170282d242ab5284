"""Embedding extraction with a training module and trial scoring used during training.

Shared by :class:`~r2n_audio.training.module.SpeakerModule` (validation EER each epoch) and the
recipes (final extraction), so both embed exactly the same way.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["extract_embeddings", "score_trials_eer", "trial_metrics"]


@torch.inference_mode()
def extract_embeddings(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu",
                       progress: bool = False, total: int | None = None) -> dict[str, np.ndarray]:
    """Embed ``(keys, waveforms (B, N), lengths (B,))`` batches; returns ``{key: (D,) float32}``.

    ``model`` maps ``(waveforms, lengths)`` to ``(B, D)`` (a
    :class:`~r2n_audio.training.module.SpeakerModule` does); it is put in eval mode and
    restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    out: dict[str, np.ndarray] = {}
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=total, desc="embed", unit="batch")
    try:
        for batch in batches:  # (keys, waveforms, lengths, ...), e.g. an EvalBatch
            keys, waveforms, lengths = batch[0], batch[1], batch[2]
            emb = model(waveforms.to(device), lengths.to(device)).float().cpu().numpy()
            out.update(zip(keys, emb))
    finally:
        model.train(was_training)
    return out


def trial_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """EER (percent) and normalised minDCF at P_target 0.01 and 0.05 (C_miss = C_fa = 1)."""
    from r2n_audio.scoring.metrics import compute_eer, compute_min_dcf

    eer, _ = compute_eer(scores, labels)
    return {"eer": 100.0 * float(eer),
            "min_dcf_0.01": float(compute_min_dcf(scores, labels, p_target=0.01)[0]),
            "min_dcf_0.05": float(compute_min_dcf(scores, labels, p_target=0.05)[0])}


def score_trials_eer(trials, embeddings: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Plain cosine scores of ``trials`` (a :class:`~r2n_audio.data.manifests.Trials`) and their
    :func:`trial_metrics`; trials with a missing embedding are left out."""
    from r2n_audio.scoring.cosine import score_trials

    result = score_trials(trials, dict(embeddings))
    valid = result.valid
    if not valid.any():
        return {}
    return trial_metrics(result.scores[valid], np.asarray(trials.labels)[valid])
