"""A no-training baseline: cosine scoring of per-utterance log-mel statistics.

Each utterance becomes the concatenation of the mean and standard deviation over frames of its
80-bin Kaldi log-mel filterbank (25 ms / 10 ms); the vectors are centred on their mean over the
scored utterances (the same unsupervised mean subtraction the trained systems get) and scored
with the cosine. Whatever a trained model reaches is measured against this: on a corpus where
this baseline already separates speakers, a model has nothing to show.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from r2n_audio.audio import load_audio
from r2n_audio.data.manifests import read_trials, read_wav_scp
from r2n_audio.errors import DataFormatError
from r2n_audio.features.fbank import Fbank
from r2n_audio.scoring.metrics import compute_eer

__all__ = ["logmel_statistics", "baseline_scores", "baseline_eer"]


def logmel_statistics(paths: dict[str, str], num_mel_bins: int = 80) -> dict[str, np.ndarray]:
    """Mean and standard deviation of each utterance's log-mel frames.

    Parameters
    ----------
    paths : dict of str to str
        Utterance key -> audio file.
    num_mel_bins : int

    Returns
    -------
    dict of str to np.ndarray (2 * num_mel_bins,)
    """
    fbank = Fbank(num_mel_bins=num_mel_bins).eval()
    stats = {}
    with torch.no_grad():
        for key, path in paths.items():
            feats, _ = fbank(load_audio(path)[None])
            feats = feats[0]
            stats[key] = torch.cat([feats.mean(0), feats.std(0)]).numpy()
    return stats


def baseline_scores(data_dir: str | os.PathLike, trials_path: str | os.PathLike
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores (T,) of centred log-mel statistics and the trial labels (T,)."""
    trials = read_trials(trials_path)
    if not trials.labelled:
        raise DataFormatError(trials_path, "the baseline needs target/nontarget labels")
    wav_scp = Path(data_dir) / "wav.scp"
    paths = read_wav_scp(wav_scp)
    needed = sorted(set(trials.keys()))
    missing = [k for k in needed if k not in paths]
    if missing:
        raise DataFormatError(wav_scp, f"{len(missing)} trial utterances are not listed "
                                       f"(first: {missing[0]}); pass the data dir of the trials")
    stats = logmel_statistics({k: paths[k] for k in needed})
    matrix = np.stack([stats[k] for k in needed])
    matrix -= matrix.mean(axis=0)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-12
    row = {k: i for i, k in enumerate(needed)}
    enroll = matrix[[row[k] for k in trials.enroll]]
    test = matrix[[row[k] for k in trials.test]]
    return np.sum(enroll * test, axis=1), trials.labels


def baseline_eer(data_dir: str | os.PathLike, trials_path: str | os.PathLike) -> float:
    """EER in percent of the no-training log-mel statistics baseline on a trial list.

    Parameters
    ----------
    data_dir : str or PathLike
        A folder with a ``wav.scp`` listing every utterance of the trials (for the synthetic
        corpus, its root or its ``test/`` folder).
    trials_path : str or PathLike
        Kaldi or VoxCeleb trial list with labels.

    Returns
    -------
    float
        Equal error rate in percent.
    """
    scores, labels = baseline_scores(data_dir, trials_path)
    eer, _ = compute_eer(scores, labels)
    return 100.0 * eer
