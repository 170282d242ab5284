"""Duration bucketing: the one helper that packs utterances into batches by padded length.

Used by :class:`~r2n_audio.inference.embedder.Embedder` (segments, shortest first) and
:class:`~r2n_audio.data.datasets.BucketBatchSampler` (validation, longest first).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = ["duration_batches"]


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
