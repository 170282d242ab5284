"""Duration bucketing: the one helper that packs utterances into batches by padded length.

Used by :class:`~r2n_audio.inference.embedder.Embedder` (segments, shortest first; and
:func:`similar_length_runs` first), :mod:`~r2n_audio.inference.shared_frames` (blocks) and
:class:`~r2n_audio.data.datasets.BucketBatchSampler` (validation, longest first).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = ["duration_batches", "similar_length_runs"]


def duration_batches(order: Iterable[int], sizes: Sequence[float] | Mapping[int, float],
                     budget: float, max_items: int | None = None) -> Iterator[list[int]]:
    """Group the items of ``order`` (any order; sorted by size packs tightest), consecutively,
    into batches whose padded cost ``len(batch) * max(size in batch)`` stays within ``budget``
    and that hold at most ``max_items``; an item over the budget gets a batch of its own.

    >>> list(duration_batches([0, 1, 2, 3], [1, 2, 2, 5], budget=6))
    [[0, 1, 2], [3]]
    """
    batch: list[int] = []
    longest = 0.0
    for i in order:
        size = max(longest, sizes[i])
        if batch and ((len(batch) + 1) * size > budget
                      or (max_items is not None and len(batch) >= max_items)):
            yield batch
            batch, size = [], sizes[i]
        batch.append(i)
        longest = size
    if batch:
        yield batch


def similar_length_runs(order: Iterable[int], sizes: Sequence[float], spread: float = 0.1
                        ) -> Iterator[list[int]]:
    """Cut ``order`` (sorted by size, shortest first) into consecutive runs whose longest item
    is at most ``1 + spread`` times their shortest: the network then computes almost no padding
    (one 60-second batch of 1-3 s files is a third padding), which saves more than the smaller
    batches cost (measured ~10 % of network CPU time on 1-3 s files, ECAPA C=1024).

    >>> list(similar_length_runs([0, 1, 2, 3], [10, 10.5, 12, 13]))
    [[0, 1], [2, 3]]
    """
    run: list[int] = []
    for i in order:
        if run and sizes[i] > (1 + spread) * sizes[run[0]]:
            yield run
            run = []
        run.append(i)
    if run:
        yield run
