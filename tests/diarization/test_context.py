"""Two-scale windows: context windows, the averaged affinity, and the diarizer's options.

The reference for the averaged affinity: with unit rows ``u`` (windows) and ``c`` (context),
the cosine between concatenated rows ``[u_i, c_i]`` is ``(u_i.u_j + c_i.c_j) / 2``, the mean of
the two cosines. So clustering ``emb`` with ``context`` must equal WeSpeaker's spectral
clustering and scikit-learn's AHC run on the concatenation.
"""

from __future__ import annotations

import numpy as np
import pytest

from r2n_audio.diarization.clustering import (ahc_clustering, spectral_clustering,
                                              window_similarity)
from r2n_audio.diarization.segments import context_windows
from r2n_audio.errors import R2NError

from .test_clustering import _blobs, _same_partition, wespeaker_cluster  # noqa: F401


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _two_scales(rng, n, k):
    """Window embeddings too noisy to separate ``k`` speakers alone, and steadier context."""
    emb, truth = _blobs(rng, n, k, spread=1.4)
    centres = rng.standard_normal((k, 24))
    context = centres[truth] + 0.5 * rng.standard_normal((n, 24))
    return emb, context, truth


def test_context_windows_are_centred_and_inside():
    windows = np.array([[0.0, 1.5], [0.75, 2.25], [5.0, 6.5], [8.5, 10.0]])
    ctx = context_windows(windows, 3.0, duration=10.0)
    np.testing.assert_allclose(ctx[:, 1] - ctx[:, 0], 3.0)
    np.testing.assert_allclose(ctx[2], [4.25, 7.25])  # centred where there is room
    np.testing.assert_allclose(ctx[0], [0.0, 3.0])  # shifted at the start ...
    np.testing.assert_allclose(ctx[3], [7.0, 10.0])  # ... and at the end
    np.testing.assert_allclose(context_windows(windows[:1], 3.0, duration=2.0), [[0.0, 2.0]])


def test_window_similarity_is_the_mean_of_both_cosines(rng):
    from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

    emb, context = rng.standard_normal((30, 8)), rng.standard_normal((30, 5))
    expected = 0.5 * (sk_cosine(emb) + sk_cosine(context))
    np.testing.assert_allclose(window_similarity(emb, context), expected, atol=1e-6)
    np.testing.assert_allclose(window_similarity(emb), sk_cosine(emb), atol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        window_similarity(emb, context[:-1])


@pytest.mark.parametrize("n,k", [(80, 3), (150, 5)])
def test_spectral_with_context_matches_wespeaker_on_the_concatenation(wespeaker_cluster, n, k):
    rng = np.random.default_rng(n)
    emb, context, truth = _two_scales(rng, n, k)
    joined = np.concatenate([_unit(emb), _unit(context)], axis=1)
    theirs = np.asarray(wespeaker_cluster(joined, max_num_spks=10))
    ours = spectral_clustering(emb, context=context)
    assert _same_partition(ours, theirs)
    assert _same_partition(ours, truth)
    assert not _same_partition(spectral_clustering(emb), truth)  # the context is what helps


@pytest.mark.parametrize("threshold", [0.4, 0.7])
def test_ahc_with_context_matches_sklearn_on_the_concatenation(rng, threshold):
    from sklearn.cluster import AgglomerativeClustering

    emb, context, _ = _two_scales(rng, 60, 4)
    joined = np.concatenate([_unit(emb), _unit(context)], axis=1)
    theirs = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=threshold).fit_predict(joined)
    assert _same_partition(ahc_clustering(emb, threshold, max_speakers=60, context=context),
                           theirs)


def test_diarizer_options_reach_vad_and_embedder(tiny_bundle):
    from r2n_audio.diarization.pipeline import Diarizer
    from r2n_audio.diarization.vad import SileroVAD

    diarizer = Diarizer.from_pretrained(tiny_bundle, device="cpu", vad_threshold=0.2,
                                        vad_level=None)
    assert isinstance(diarizer._vad, SileroVAD) and diarizer._vad.rules["threshold"] == 0.2
    assert diarizer._vad.level is None
    assert Diarizer.from_pretrained(tiny_bundle, device="cpu")._vad.level == 0.5
    diarizer = Diarizer.from_pretrained(tiny_bundle, device="cpu", vad="none")
    seen = []
    diarizer._embed = lambda wave, spans: seen.append(spans) or np.random.default_rng(
        0).standard_normal((len(spans), 8))
    diarizer(np.random.default_rng(1).standard_normal(16000 * 8).astype(np.float32) * 0.1)
    spans = seen[0]
    half = len(spans) // 2
    np.testing.assert_allclose(spans[half:, 1] - spans[half:, 0], 3.0)  # context windows
    np.testing.assert_allclose(spans[half:].mean(1), np.clip(spans[:half].mean(1), 1.5, 6.5))


@pytest.mark.parametrize("options,message", [({"context": 1.0}, "--context"),
                                             ({"vad_threshold": 1.5}, "--vad-threshold"),
                                             ({"vad_level": 0.0}, "vad_level"),
                                             ({"split_below": 1.5}, "split_below"),
                                             ({"merge_above": -2.0}, "merge_above")])
def test_bad_options_are_one_clear_error(tiny_bundle, options, message):
    from r2n_audio.diarization.pipeline import Diarizer

    with pytest.raises(R2NError, match=message):
        Diarizer.from_pretrained(tiny_bundle, device="cpu", **options)


@pytest.mark.parametrize("given,level", [([], 0.5), (["--vad-level", "0"], None),
                                         (["--vad-level", "0.2"], 0.2)])
def test_cli_vad_level_reaches_silero(tmp_path, conversations, tiny_bundle, monkeypatch,
                                      given, level):
    from r2n_audio.cli import main
    from r2n_audio.diarization import pipeline

    seen = []
    real = pipeline.make_vad
    monkeypatch.setattr(pipeline, "make_vad", lambda name, **o: seen.append(o) or real(name, **o))
    assert main(["diarize", str(conversations / "wav" / "conv0001.wav"), "--model",
                 str(tiny_bundle), "-o", str(tmp_path), "--device", "cpu", "--quiet",
                 *given]) == 0
    assert seen == [{"threshold": 0.35, "level": level}]


@pytest.mark.parametrize("given,split,merge", [([], 0.5, 0.62),
                                               (["--split-below", "off", "--merge-above", "0.7"],
                                                None, 0.7)])
def test_cli_refinement_thresholds_reach_the_clustering(tmp_path, conversations, tiny_bundle,
                                                       monkeypatch, given, split, merge):
    from r2n_audio.cli import main
    from r2n_audio.diarization import pipeline

    seen = []
    real = pipeline.cluster_embeddings
    monkeypatch.setattr(pipeline, "cluster_embeddings",
                        lambda *a, **o: seen.append(o) or real(*a, **o))
    assert main(["diarize", str(conversations / "wav" / "conv0001.wav"), "--model",
                 str(tiny_bundle), "-o", str(tmp_path), "--device", "cpu", "--quiet",
                 *given]) == 0
    assert (seen[0]["split_below"], seen[0]["merge_above"]) == (split, merge)


def test_cli_refuses_a_threshold_that_is_no_cosine(tmp_path, tiny_bundle, capsys):
    from r2n_audio.cli import main

    assert main(["diarize", str(tmp_path), "--model", str(tiny_bundle), "-o",
                 str(tmp_path / "o"), "--merge-above", "2"]) == 2
    assert "--merge-above: must be a finite number in [-1, 1] (or off), got '2'" in \
        capsys.readouterr().err
