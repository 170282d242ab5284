"""Clustering window embeddings into speakers: spectral (eigengap count) and agglomerative.

Spectral clustering follows WeSpeaker's ``wespeaker/diar/spectral_clusterer.py`` (and
3D-Speaker's ``SpectralCluster``, which differs only in not binarising):

1. affinity ``A = (1 + cos) / 2`` between L2-normalised embeddings (any increasing map of the
   cosine gives the same result, as the next step keeps only each row's ranking); with
   ``context`` embeddings (a longer window around each window) the cosine is the mean of the
   two scales' cosines, as NeMo's multi-scale affinity averages its scales;
2. p-pruning: in each row the ``max(min_neighbours, N - int((1 - p) N))`` largest entries
   (the window itself included) become 1 and the rest 0 (WeSpeaker keeps 10 below 1,000 windows, the top 1 % above), then
   ``A <- (A + A^T) / 2`` and the diagonal is zeroed;
3. the unnormalised Laplacian ``L = D - A``; its smallest eigenvalues ``l_1 <= l_2 <= ...``;
4. the speaker count ``K = argmax_k (l_{k+1} - l_k)`` over ``min_speakers <= k <= max_speakers``
   (the eigengap), unless given;
5. k-means (scikit-learn, 10 initialisations) on the first ``K`` eigenvectors;
6. unless the count was given, it is refined by the clusters' centroids
   (:func:`refine_clusters`): a cluster whose two halves (spectral clustering of its own
   windows into 2) have centroids less alike than ``split_below`` is cut in two, then the two
   most alike clusters are merged while their centroids' cosine is at least ``merge_above``
   (3D-Speaker's ``merge_by_cos``).

Why step 6: a 60 s conversation of 5-6 speakers gives each speaker 8-15 windows, fewer than a
window's 10 kept neighbours, so the graph leaks between speakers and the eigengap merges them
(and elsewhere splits one voice whose turns differ). A centroid averages many windows: a far
steadier voice print than any one window. On four held-out conversation sets of 20 recordings
(seeds 1-4, Silero VAD) with the demo model, DER went from 8.96 % to 6.42 % on average (count
errors 43 -> 31; seed 2 alone got worse, 6.59 -> 7.11 %), and from 9.42 % to 6.36 % with a
second, better ECAPA (seeds 3-4). The thresholds are on the demo ECAPA's cosine scale: set
them per model, as AHC's threshold.

Eigenvectors come from ``scipy.linalg.eigh`` (only the wanted ones) up to
``dense_limit`` windows, and from ``scipy.sparse.linalg.eigsh`` on the
sparse pruned graph (Lanczos) above it: 5,000 windows in about 2 s instead of 40.

Agglomerative clustering is average linkage on cosine distances (``1 -`` the same, possibly
two-scale, cosine; ``scipy.cluster.hierarchy``), cut at a distance ``threshold`` or at
``num_speakers`` clusters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from r2n_audio.errors import R2NError

if TYPE_CHECKING:
    import scipy.sparse

# scipy is imported where it is used: the CLI imports this module for its defaults, and
# scipy.linalg alone would add 0.3 s to every ``r2n-audio`` start.

__all__ = ["CLUSTERINGS", "AHC_THRESHOLD", "SPLIT_BELOW", "MERGE_ABOVE", "MIN_WINDOWS",
           "cosine_similarity", "window_similarity", "prune_affinity", "laplacian_eigs",
           "eigengap_count", "spectral_clustering", "centroid_similarity", "split_clusters",
           "merge_clusters", "refine_clusters", "ahc_clustering", "cluster_embeddings"]

CLUSTERINGS = ("spectral", "ahc")
# AHC's default stopping distance: the best of 0.6-0.9 on two held-out conversation sets with
# the demo model and two-scale affinity (DER 9.6 %; spectral clustering gave 5.3 % there). It
# depends on the model's cosine scale: set --threshold per model.
AHC_THRESHOLD = 0.7
# The count refinement's thresholds (step 6 of the module doc): centroid cosines, the mean of
# the window and context scales. Chosen on held-out sets with the demo model (split 0.45-0.5
# and merge 0.62-0.65 were best for it and for a second ECAPA; merging at 0.6 or 0.7 was
# worse). A cluster part needs MIN_WINDOWS windows (5 s of speech at the default hop).
SPLIT_BELOW = 0.5
MERGE_ABOVE = 0.62
MIN_WINDOWS = 6


def _unit_rows(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def cosine_similarity(emb: np.ndarray) -> np.ndarray:
    """(N, N) float32 cosine similarities between the rows of ``emb`` (N, D)."""
    unit = _unit_rows(emb).astype(np.float32)
    return unit @ unit.T


def window_similarity(emb: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """(N, N) float32 cosine between windows (N, D); with ``context`` (N, D'), the embeddings of
    a longer window around each window, the mean of the two cosine matrices.

    A 1.5 s window places turn boundaries finely but its embedding is noisy; a 3 s window around
    it is a steadier voice print. On two held-out conversation sets (the demo model, Silero VAD,
    shared frames) averaging the two cut DER from 12.9 % to 5.3 %.
    """
    similarity = cosine_similarity(emb)
    if context is not None:
        if len(context) != len(emb):
            raise ValueError(f"context has {len(context)} rows for {len(emb)} windows")
        similarity = 0.5 * (similarity + cosine_similarity(context))
    return similarity


def _kept(n: int, p: float, min_neighbours: int) -> int:
    return min(n, max(min_neighbours, n - int((1.0 - p) * n)))


def prune_affinity(similarity: np.ndarray, p: float = 0.01, min_neighbours: int = 10,
                   sparse: bool = False) -> np.ndarray | scipy.sparse.csr_matrix:
    """Binarised, symmetrised p-pruned affinity with a zero diagonal (step 2 of the module doc).

    ``similarity`` (N, N) is any increasing function of the affinity (the cosine itself: only
    the ranking in each row matters once the kept entries are set to 1). Returns a dense (N, N)
    array, or a CSR matrix with ``sparse=True``.
    """
    import scipy.sparse

    n = similarity.shape[0]
    keep = _kept(n, p, min_neighbours)
    # The keep-th largest value of each row; a full argsort per row (WeSpeaker) is 10x slower.
    kth = np.partition(similarity, n - keep, axis=1)[:, n - keep]
    rows, cols = np.nonzero(similarity >= kth[:, None])
    off = rows != cols
    graph = scipy.sparse.csr_matrix((np.ones(off.sum()), (rows[off], cols[off])), shape=(n, n))
    graph = 0.5 * (graph + graph.T)
    return graph.tocsr() if sparse else graph.toarray()


def laplacian_eigs(graph: np.ndarray | scipy.sparse.spmatrix, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenvalues (k,) and eigenvectors (N, k) of ``D - graph``."""
    import scipy.linalg
    import scipy.sparse
    import scipy.sparse.linalg

    n = graph.shape[0]
    k = min(k, n)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    if scipy.sparse.issparse(graph):
        lap = (scipy.sparse.diags(degree) - graph).tocsr()
        if k < n - 1:
            # Lanczos on the sparse graph; shift-invert would factorise L, and a k-NN graph's
            # factor fills in (5,000 windows: 12 s against 1.5 s).
            values, vectors = scipy.sparse.linalg.eigsh(lap, k=k, which="SA", tol=1e-6,
                                                        v0=np.ones(n) / np.sqrt(n))
            order = np.argsort(values)
            return values[order], vectors[:, order]
        graph = graph.toarray()
    lap = np.diag(degree) - graph
    return scipy.linalg.eigh(lap, subset_by_index=[0, k - 1])


def eigengap_count(eigenvalues: np.ndarray, min_speakers: int = 1, max_speakers: int = 10) -> int:
    """``argmax_k (l_{k+1} - l_k)`` over ``min_speakers <= k <= max_speakers`` (1-based k).

    Examples
    --------
    >>> eigengap_count(np.array([0.0, 0.0, 0.0, 5.0, 5.5, 6.0]))
    3
    """
    top = min(max_speakers, len(eigenvalues) - 1)
    if top <= min_speakers:
        return max(1, min(min_speakers, len(eigenvalues)))
    gaps = np.diff(eigenvalues[min_speakers - 1:top + 1])
    return int(np.argmax(gaps)) + min_speakers


def _kmeans(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points)


def spectral_clustering(emb: np.ndarray, num_speakers: int | None = None, min_speakers: int = 1,
                        max_speakers: int = 10, p: float = 0.01, min_neighbours: int = 10,
                        dense_limit: int = 1000, seed: int = 0,
                        context: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels (N,) of embeddings (N, D) by spectral clustering (see module doc);
    ``context`` (N, D') as :func:`window_similarity`."""
    n = len(emb)
    if n <= 2 or num_speakers == 1 or max_speakers == 1:
        return _fixed_count(n, num_speakers)
    graph = prune_affinity(window_similarity(emb, context), p, min_neighbours,
                           sparse=n > dense_limit)
    wanted = num_speakers if num_speakers is not None else max_speakers + 1
    values, vectors = laplacian_eigs(graph, wanted)
    k = num_speakers or eigengap_count(values, min_speakers, max_speakers)
    return _kmeans(vectors[:, :k], k, seed)


def centroid_similarity(groups: list[np.ndarray], emb: np.ndarray,
                        context: np.ndarray | None = None) -> np.ndarray:
    """(K, K) cosine between the centroids (row means) of ``groups``, K index arrays into
    ``emb (N, D)``; with ``context (N, D')`` the mean of both scales' centroid cosines."""
    sims = []
    for rows in (emb,) if context is None else (emb, context):
        centres = _unit_rows(np.stack([rows[g].mean(axis=0) for g in groups]))
        sims.append(centres @ centres.T)
    return np.mean(sims, axis=0)


def split_clusters(labels: np.ndarray, emb: np.ndarray, context: np.ndarray | None = None,
                   threshold: float = SPLIT_BELOW, min_windows: int = MIN_WINDOWS,
                   max_speakers: int = 10, seed: int = 0) -> np.ndarray:
    """Labels (N,) with every cluster that holds two voices cut in two.

    A cluster of at least ``2 * min_windows`` windows is split by :func:`spectral_clustering`
    of its own windows into 2; the cut stands when both parts have ``min_windows`` windows and
    their :func:`centroid_similarity` is below ``threshold``, and then each part is tried in
    turn. No more than ``max_speakers`` clusters are made.
    """
    labels = np.asarray(labels).copy()
    todo = np.unique(labels).tolist()
    count = len(todo)
    while todo and count < max_speakers:
        cluster = todo.pop()
        idx = np.flatnonzero(labels == cluster)
        if len(idx) < 2 * min_windows:
            continue
        halves = spectral_clustering(emb[idx], 2, context=None if context is None else
                                     context[idx], min_neighbours=min(10, len(idx) - 1),
                                     seed=seed)
        parts = [idx[halves == 0], idx[halves == 1]]
        if min(map(len, parts)) < min_windows or \
                centroid_similarity(parts, emb, context)[0, 1] >= threshold:
            continue
        new = int(labels.max()) + 1
        labels[parts[1]] = new
        count += 1
        todo += [cluster, new]
    return labels


def merge_clusters(labels: np.ndarray, emb: np.ndarray, context: np.ndarray | None = None,
                   threshold: float = MERGE_ABOVE, min_speakers: int = 1) -> np.ndarray:
    """Labels (N,) after merging, one pair at a time, the two clusters with the most similar
    centroids while their :func:`centroid_similarity` is at least ``threshold`` and more than
    ``min_speakers`` clusters are left.

    With ``context=None`` this is 3D-Speaker's ``CommonClustering.merge_by_cos`` (centroid =
    mean of the rows as given; pass unit rows to weigh windows alike).
    """
    labels = np.asarray(labels).copy()
    while True:
        ids = np.unique(labels)
        if len(ids) <= max(1, min_speakers):
            return labels
        sim = centroid_similarity([np.flatnonzero(labels == i) for i in ids], emb, context)
        sim[np.tril_indices(len(ids))] = -np.inf
        a, b = np.unravel_index(np.argmax(sim), sim.shape)
        if sim[a, b] < threshold:
            return labels
        labels[labels == ids[b]] = ids[a]


def refine_clusters(labels: np.ndarray, emb: np.ndarray, context: np.ndarray | None = None,
                    split_below: float | None = SPLIT_BELOW,
                    merge_above: float | None = MERGE_ABOVE, min_windows: int = MIN_WINDOWS,
                    min_speakers: int = 1, max_speakers: int = 10, seed: int = 0
                    ) -> np.ndarray:
    """Step 6 of the module doc: :func:`split_clusters`, then :func:`merge_clusters`, on unit
    rows of ``emb (N, D)`` (and ``context``); None skips a step."""
    emb = _unit_rows(emb)
    context = None if context is None else _unit_rows(context)
    if split_below is not None:
        labels = split_clusters(labels, emb, context, split_below, min_windows, max_speakers,
                                seed)
    if merge_above is not None:
        labels = merge_clusters(labels, emb, context, merge_above, min_speakers)
    return labels


def ahc_clustering(emb: np.ndarray, threshold: float = AHC_THRESHOLD,
                   num_speakers: int | None = None, min_speakers: int = 1, max_speakers: int = 10,
                   context: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels (N,): average-linkage AHC on cosine distance, cut at ``threshold``.

    With ``num_speakers`` the tree is cut into that many clusters instead; a threshold cut
    outside ``[min_speakers, max_speakers]`` is moved to the nearest bound. ``context`` (N, D')
    as :func:`window_similarity`.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(emb)
    if n <= 1 or num_speakers == 1:
        return _fixed_count(n, num_speakers)
    distance = 1.0 - window_similarity(emb, context).astype(np.float64)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(np.maximum(distance, 0.0), checks=False), method="average")
    if num_speakers is None:
        labels = fcluster(tree, t=threshold, criterion="distance")
        count = len(np.unique(labels))
        if min_speakers <= count <= max_speakers:
            return labels - 1
        num_speakers = min(max(count, min_speakers), max_speakers, n)
    return fcluster(tree, t=num_speakers, criterion="maxclust") - 1


def _fixed_count(n: int, num_speakers: int | None) -> np.ndarray:
    """Labels when there is nothing to decide: one cluster, or one window per cluster."""
    if num_speakers is None or num_speakers <= 1:
        return np.zeros(n, dtype=int)
    return np.arange(n)


def cluster_embeddings(emb: np.ndarray, method: str = "spectral", num_speakers: int | None = None,
                       min_speakers: int | None = None, max_speakers: int | None = None,
                       threshold: float | None = None, context: np.ndarray | None = None,
                       split_below: float | None = SPLIT_BELOW,
                       merge_above: float | None = MERGE_ABOVE, **options) -> np.ndarray:
    """Speaker index (N,) of each window embedding (N, D), numbered in order of appearance.

    ``context`` (N, D'): embeddings of a longer window around each window, averaged into the
    affinity (:func:`window_similarity`). ``split_below``, ``merge_above``: the spectral count's
    refinement (:func:`refine_clusters`, not done when ``num_speakers`` is given; None skips a
    step); AHC has its own ``threshold``.

    Raises
    ------
    R2NError
        Unknown method, inconsistent speaker bounds, or more speakers asked for than windows.
    """
    if method not in CLUSTERINGS:
        raise R2NError(f"unknown clustering {method!r}; choose one of {', '.join(CLUSTERINGS)}")
    min_speakers = 1 if min_speakers is None else min_speakers
    max_speakers = max(10, min_speakers) if max_speakers is None else max_speakers
    if not 1 <= min_speakers <= max_speakers or (num_speakers is not None and num_speakers < 1):
        raise R2NError(f"need 1 <= --min-speakers <= --max-speakers and --num-speakers >= 1 "
                       f"(got {min_speakers}, {max_speakers}, {num_speakers})")
    if num_speakers is not None and num_speakers > len(emb):
        raise R2NError(f"--num-speakers {num_speakers} is more than the {len(emb)} windows of "
                       f"speech found; give fewer speakers or a shorter --window/--hop")
    if method == "spectral":
        labels = spectral_clustering(emb, num_speakers, min_speakers, max_speakers,
                                     context=context, **options)
        if num_speakers is None:
            labels = refine_clusters(labels, emb, context, split_below, merge_above,
                                     min_speakers=min_speakers, max_speakers=max_speakers,
                                     seed=options.get("seed", 0))
    else:
        labels = ahc_clustering(emb, AHC_THRESHOLD if threshold is None else threshold,
                                num_speakers, min_speakers, max_speakers, context)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))  # cluster -> rank of its first window
    return order[np.unique(labels, return_inverse=True)[1]]
