"""Building blocks of the training recipes: embed a data dir, score a trial list, write reports.

Recipes (``recipes/mini/run.py``, ``recipes/voxceleb``) stay thin and call these; the scoring
itself is :mod:`r2n_audio.scoring.cosine` (mean subtraction, AS-Norm) and
:mod:`r2n_audio.scoring.metrics`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from r2n_audio.training.evaluation import extract_embeddings, trial_metrics

__all__ = ["embed_utterances", "speaker_means", "subsample_per_speaker", "score_and_measure"]


def embed_utterances(model: nn.Module, wavs: Mapping[str, str | os.PathLike],
                     device: torch.device | str = "cpu", sample_rate: int = 16000,
                     max_seconds: float = 200.0, num_workers: int = 1,
                     progress: bool = False) -> dict[str, np.ndarray]:
    """Embed whole utterances ``{key: path}`` with ``model`` (waveforms, lengths) -> (B, D).

    Files are read in ``num_workers`` DataLoader workers and batched by length
    (:class:`~r2n_audio.data.datasets.BucketBatchSampler`, ``max_seconds`` of padded audio per
    batch). Returns ``{key: (D,) float32}``.
    """
    from r2n_audio.data.datasets import EvalDataset
    from r2n_audio.training.datamodule import BatchedEvalDataset

    batched = BatchedEvalDataset(EvalDataset(dict(wavs), sample_rate), max_seconds)
    loader = DataLoader(batched, batch_size=None, num_workers=num_workers,
                        prefetch_factor=4 if num_workers else None)
    return extract_embeddings(model, loader, device=device, progress=progress,
                              total=len(batched))


def subsample_per_speaker(utt2spk: Mapping[str, str], per_speaker: int,
                          seed: int = 0) -> list[str]:
    """Up to ``per_speaker`` utterance keys of each speaker, drawn with ``seed`` (sorted)."""
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for utt, spk in sorted(utt2spk.items()):
        by_speaker[spk].append(utt)
    rng = np.random.default_rng(seed)
    chosen = []
    for spk in sorted(by_speaker):
        utts = by_speaker[spk]
        take = min(per_speaker, len(utts))
        chosen.extend(utts[i] for i in sorted(rng.choice(len(utts), take, replace=False)))
    return sorted(chosen)


def speaker_means(embeddings: Mapping[str, np.ndarray],
                  utt2spk: Mapping[str, str]) -> np.ndarray:
    """(S, D) mean of each speaker's raw embeddings (WeSpeaker's AS-Norm cohort: one vector per
    training speaker), speakers in sorted order.

    Raw, not length-normalised: the scorer subtracts the (raw) global mean from the cohort
    before normalising it, so the cohort must live on the same scale as that mean.
    """
    by_speaker: dict[str, list[np.ndarray]] = defaultdict(list)
    for key, vector in embeddings.items():
        if key in utt2spk:
            by_speaker[utt2spk[key]].append(vector)
    return np.stack([np.mean(by_speaker[s], axis=0) for s in sorted(by_speaker)])


def score_and_measure(trials, embeddings: Mapping[str, np.ndarray],
                      mean: np.ndarray | None = None, cohort: np.ndarray | None = None,
                      top_n: int = 100) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Score ``trials`` (cosine after subtracting ``mean``; AS-Norm when ``cohort`` is given)
    and measure them.

    Returns ``(metrics, scores (T',), labels (T',))`` over the trials whose two embeddings
    exist; ``metrics`` has ``eer`` (percent), ``min_dcf_0.01``, ``min_dcf_0.05`` and
    ``missing`` (number of trials left out).
    """
    from r2n_audio.scoring.cosine import score_trials

    result = score_trials(trials, dict(embeddings), mean=mean, cohort=cohort,
                          top_n=min(top_n, len(cohort)) if cohort is not None else top_n)
    valid = result.valid
    scores, labels = result.scores[valid], np.asarray(trials.labels)[valid]
    metrics = trial_metrics(scores, labels)
    metrics["missing"] = int((~valid).sum())
    return metrics, scores, labels
