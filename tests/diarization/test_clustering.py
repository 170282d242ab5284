"""Clustering: eigengap counts on constructed graphs, WeSpeaker and scikit-learn parity."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from r2n_audio.diarization.clustering import (ahc_clustering, cluster_embeddings,
                                              cosine_similarity, eigengap_count, laplacian_eigs,
                                              prune_affinity, spectral_clustering)
from r2n_audio.errors import R2NError


def _blobs(rng, n, k, dim=32, spread=0.6):
    centres = rng.standard_normal((k, dim))
    labels = rng.integers(k, size=n)
    labels[:k] = np.arange(k)  # every speaker present
    return centres[labels] + spread * rng.standard_normal((n, dim)), labels


def _same_partition(a, b) -> bool:
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(a, b) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def wespeaker_cluster():
    """WeSpeaker's ``cluster`` from ``wespeaker/diar/spectral_clusterer.py`` as installed.

    The file imports ``wespeaker.utils.utils`` (the package's __init__ pulls its CLI), so that
    one helper is stubbed while the file is loaded.
    """
    spec = importlib.util.find_spec("wespeaker")
    if spec is None:
        pytest.skip("wespeaker-unofficial is not installed")
    path = next(iter(spec.submodule_search_locations)) + "/diar/spectral_clusterer.py"
    stubs = {name: types.ModuleType(name)
             for name in ("wespeaker", "wespeaker.utils", "wespeaker.utils.utils")}
    stubs["wespeaker.utils.utils"].validate_path = lambda *_: None
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        module_spec = importlib.util.spec_from_file_location("_wespeaker_spectral", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module.cluster


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_eigengap_counts_blocks(k):
    """k disconnected cliques of 8: the Laplacian has exactly k zero eigenvalues."""
    graph = np.kron(np.eye(k), np.ones((8, 8)))
    np.fill_diagonal(graph, 0.0)
    values, _ = laplacian_eigs(graph, 11)
    assert eigengap_count(values, 1, 10) == k


def test_eigengap_respects_bounds():
    values = np.array([0.0, 0.1, 0.2, 0.3, 9.0, 9.1, 9.3, 15.0])  # 4 blocks
    assert eigengap_count(values, 1, 10) == 4
    assert eigengap_count(values, 1, 3) == 1  # gaps 0.1, 0.1, 0.1: the first wins
    assert eigengap_count(values, 5, 7) == 7  # gaps 0.1, 0.2, 5.7 -> k = 7
    assert eigengap_count(values[:3], 2, 10) == 2


def test_pruning_keeps_top_neighbours_binarised():
    rng = np.random.default_rng(0)
    sim = cosine_similarity(rng.standard_normal((30, 8)))
    graph = prune_affinity(sim, p=0.01, min_neighbours=10)
    assert set(np.unique(graph)) <= {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(graph, graph.T)
    assert np.all(np.diag(graph) == 0)
    # WeSpeaker's rule by hand: row i keeps its 10 largest similarities (itself included).
    keep = np.zeros_like(sim)
    for i, row in enumerate(sim):
        keep[i, np.argsort(row)[-10:]] = 1.0
    expected = 0.5 * (keep + keep.T)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_array_equal(graph, expected)


@pytest.mark.parametrize("n,k", [(60, 2), (120, 4), (200, 6)])
def test_spectral_matches_wespeaker(wespeaker_cluster, n, k):
    rng = np.random.default_rng(n)
    emb, truth = _blobs(rng, n, k)
    theirs = np.asarray(wespeaker_cluster(emb, max_num_spks=10))
    ours = spectral_clustering(emb, max_speakers=10)
    assert len(np.unique(ours)) == len(np.unique(theirs)) == k
    assert _same_partition(ours, theirs) and _same_partition(ours, truth)


def test_spectral_embedding_spans_sklearns(rng):
    """Our eigenvectors and scikit-learn's unnormalised spectral embedding span one subspace."""
    from sklearn.manifold import spectral_embedding

    emb, _ = _blobs(rng, 80, 3, spread=1.5)
    graph = prune_affinity(cosine_similarity(emb))
    _, ours = laplacian_eigs(graph, 3)
    theirs = spectral_embedding(graph, n_components=3, norm_laplacian=False, drop_first=False,
                                random_state=0)
    q, _ = np.linalg.qr(theirs)
    np.testing.assert_allclose(ours @ ours.T, q @ q.T, atol=1e-6)


def test_sparse_and_dense_eigensolvers_agree(rng):
    emb, _ = _blobs(rng, 1100, 4, spread=1.2)
    graph = prune_affinity(cosine_similarity(emb))
    sparse = prune_affinity(cosine_similarity(emb), sparse=True)
    dense_values, _ = laplacian_eigs(graph, 11)
    sparse_values, _ = laplacian_eigs(sparse, 11)
    np.testing.assert_allclose(sparse_values, dense_values, atol=1e-6)
    labels_dense = spectral_clustering(emb, dense_limit=5000)
    labels_sparse = spectral_clustering(emb, dense_limit=100)
    assert _same_partition(labels_dense, labels_sparse)


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9])
def test_ahc_matches_sklearn(rng, threshold):
    from sklearn.cluster import AgglomerativeClustering

    emb = rng.standard_normal((70, 16))
    theirs = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=threshold).fit_predict(emb)
    ours = ahc_clustering(emb, threshold, max_speakers=70)
    assert _same_partition(ours, theirs)
    fixed = AgglomerativeClustering(n_clusters=4, metric="cosine",
                                    linkage="average").fit_predict(emb)
    assert _same_partition(ahc_clustering(emb, num_speakers=4), fixed)


def test_labels_numbered_in_order_of_appearance(rng):
    emb, _ = _blobs(rng, 40, 3)
    labels = cluster_embeddings(emb[::-1])
    _, first = np.unique(labels, return_index=True)
    assert list(labels[np.sort(first)]) == [0, 1, 2]


def test_degenerate_inputs(rng):
    emb, _ = _blobs(rng, 30, 2)
    assert cluster_embeddings(emb[:1]).tolist() == [0]
    assert cluster_embeddings(emb[:2]).tolist() == [0, 0]
    assert cluster_embeddings(emb[:3], num_speakers=3).tolist() == [0, 1, 2]
    assert len(np.unique(cluster_embeddings(emb, num_speakers=5))) == 5
    with pytest.raises(R2NError, match="--num-speakers 4 is more than the 3 windows"):
        cluster_embeddings(emb[:3], num_speakers=4)
    with pytest.raises(R2NError, match="min-speakers"):
        cluster_embeddings(emb, min_speakers=4, max_speakers=2)
    with pytest.raises(R2NError, match="unknown clustering"):
        cluster_embeddings(emb, "kmeans")


def test_min_and_max_speakers_bound_the_count(rng):
    emb, _ = _blobs(rng, 120, 4)
    assert len(np.unique(cluster_embeddings(emb, max_speakers=2))) <= 2
    assert len(np.unique(cluster_embeddings(emb, min_speakers=6, max_speakers=8))) >= 6
    assert len(np.unique(cluster_embeddings(emb, "ahc", threshold=1.9, min_speakers=3))) == 3
