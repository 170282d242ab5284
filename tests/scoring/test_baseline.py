"""The no-training baseline: equal to a torchaudio + scikit-learn reference, and weak on the
synthetic corpus (the corpus is not separable by long-term spectral statistics)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from sklearn.metrics import roc_curve

from r2n_audio.data.manifests import read_trials, read_wav_scp
from r2n_audio.data.synthetic import make_corpus
from r2n_audio.errors import DataFormatError
from r2n_audio.scoring.baseline import baseline_eer, baseline_scores


def _reference_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    return 100.0 * (fpr[i] + fnr[i]) / 2.0


def test_scores_match_torchaudio_reference(tiny_corpus):
    trials = read_trials(tiny_corpus / "trials.txt")
    paths = read_wav_scp(tiny_corpus / "test" / "wav.scp")
    keys = sorted(paths)
    stats = []
    for key in keys:
        wav, sr = sf.read(paths[key], dtype="float32")
        feats = torchaudio.compliance.kaldi.fbank(torch.from_numpy(wav)[None], num_mel_bins=80,
                                                  sample_frequency=sr)
        stats.append(torch.cat([feats.mean(0), feats.std(0)]).double().numpy())
    matrix = np.stack(stats)
    matrix -= matrix.mean(0)
    row = {k: i for i, k in enumerate(keys)}
    e = matrix[[row[k] for k in trials.enroll]]
    t = matrix[[row[k] for k in trials.test]]
    expected = (e * t).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(t, axis=1)
    scores, labels = baseline_scores(tiny_corpus / "test", tiny_corpus / "trials.txt")
    np.testing.assert_allclose(scores, expected, atol=2e-4)
    np.testing.assert_array_equal(labels, trials.labels)
    assert baseline_eer(tiny_corpus, tiny_corpus / "trials.txt") == pytest.approx(
        _reference_eer(expected, trials.labels), abs=100.0 / trials.labels.sum() + 1e-6)


def test_missing_utterance_names_the_wav_scp(tiny_corpus):
    with pytest.raises(DataFormatError, match="wav.scp"):
        baseline_eer(tiny_corpus / "train", tiny_corpus / "trials.txt")


def test_baseline_is_weak_on_the_synthetic_corpus(tmp_path):
    """40 held-out speakers x 8 utterances of 2 s, as the default corpus draws them."""
    make_corpus(tmp_path, n_train_speakers=0, n_test_speakers=40, utts_per_speaker=8, seed=0,
                min_seconds=2.0, max_seconds=2.0, augment_sets=False)
    eer = baseline_eer(tmp_path / "test", tmp_path / "trials.txt")
    assert eer >= 15.0
