"""Building blocks of the training recipes: embed a data dir, cohorts, score a trial list.

Recipes (``recipes/mini/run.py``, ``recipes/voxceleb``) stay thin and call these. Embedding
goes through :class:`~r2n_audio.inference.embedder.Embedder` (the path of ``r2n-audio
embed``), scoring through :mod:`r2n_audio.scoring.trials`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from r2n_audio.inference.embedder import Embedder
from r2n_audio.training.evaluation import embedder_for

__all__ = ["embed_utterances", "speaker_means", "subsample_per_speaker", "score_and_measure"]


def embed_utterances(model: nn.Module | Embedder, wavs: Mapping[str, str | os.PathLike],
                     device: torch.device | str = "cpu", workers: int = 1,
                     progress: bool = False) -> dict[str, np.ndarray]:
    """Embed whole utterances ``{key: path}``; returns ``{key: (D,) float32}``.

    ``model`` is an :class:`Embedder` or a training module (its front-end and backbone are
    used as :func:`~r2n_audio.training.evaluation.embedder_for` wraps them). ``workers``
    threads decode ahead of the network.

    Raises
    ------
    AudioError
        The first file that has no embedding (unreadable, silent...).
    """
    from r2n_audio.progress import Progress

    embedder = model if isinstance(model, Embedder) else embedder_for(model, device)
    keys = list(wavs)
    out: dict[str, np.ndarray] = {}
    with Progress(len(keys), "embed", unit="utt", quiet=not progress) as bar:
        for result in embedder.iter_files([wavs[k] for k in keys], workers=workers):
            if result.error is not None:
                raise result.error
            out[keys[result.index]] = result.embedding
            bar.update()
    return out


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
    """Score ``trials`` (cosine after subtracting ``mean``; AS-Norm when ``cohort`` is given,
    ``top_n`` capped at the cohort size) and measure them.

    Returns ``(metrics, scores (T',), labels (T',))`` over the trials whose two embeddings
    exist; ``metrics`` is :func:`~r2n_audio.scoring.metrics.evaluate`'s (``eer`` a fraction)
    plus ``missing`` (number of trials left out).
    """
    from r2n_audio.scoring.trials import score_trial_list

    if cohort is not None:
        top_n = min(top_n, len(cohort))
    scored = score_trial_list(trials, embeddings, mean=mean, cohort=cohort, top_n=top_n)
    metrics = scored.metrics()
    metrics["missing"] = int((~scored.result.valid).sum())
    return metrics, scored.scores, scored.labels
