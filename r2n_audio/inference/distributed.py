"""Embedding across processes and nodes: ``r2n-audio embed`` under ``torchrun``.

::

    torchrun --nproc-per-node 8 -m r2n_audio.cli embed data/vox2_dev/wav.scp -m model.pt -o x.ark
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m r2n_audio.cli embed ...

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :meth:`RankGroup.from_env`
reads them (one process without them) and joins a gloo group (small Python objects only: key
lists and counts; the embeddings themselves go through the shared output folder). Each rank
embeds a disjoint share of the files, balanced by duration (longest first onto the least
loaded rank), writing each embedding atomically into the output (npy) or its staging folder
(npz/ark); rank 0 then merges the archive and prints the totals. The output folder must be
on a filesystem every node sees.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from r2n_audio.audio import audio_duration
from r2n_audio.errors import AudioError, R2NError

__all__ = ["RankGroup", "balanced_shares", "durations_of"]

T = TypeVar("T")


def balanced_shares(durations: Sequence[float], world: int) -> list[list[int]]:
    """Split item indices into ``world`` shares of near-equal total duration.

    Longest item first onto the least-loaded share (LPT): every share ends within one item's
    duration of the mean, so with many items the shares are equal to a few percent. The same
    input gives the same split on every rank. Indices in each share keep their input order.
    """
    heap = [(0.0, r) for r in range(world)]
    shares: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(durations)), key=lambda i: (-durations[i], i)):
        load, rank = heapq.heappop(heap)
        shares[rank].append(i)
        heapq.heappush(heap, (load + durations[i], rank))
    return [sorted(s) for s in shares]


def durations_of(paths: Sequence[str], known: Mapping[str, float] | None = None) -> list[float]:
    """Seconds per path from ``known`` (e.g. a ``utt2dur`` keyed by path) or the header; an
    unreadable file counts 0 (it fails, with its reason, when embedded)."""
    known = known or {}
    result = []
    for path in paths:
        if path in known:
            result.append(float(known[path]))
            continue
        try:
            result.append(audio_duration(path))
        except AudioError:
            result.append(0.0)
    return result


@dataclass
class RankGroup:
    """This process's place among the embedding processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "RankGroup":
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and join the gloo group when > 1 process.

        Raises
        ------
        R2NError
            Inconsistent variables (a rank outside the world).
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if not 0 <= rank < world:
            raise R2NError(f"RANK={rank} is outside WORLD_SIZE={world}; launch with torchrun")
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")  # MASTER_ADDR/PORT from torchrun (env://)
        return cls(rank, world, local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """``auto``/``cuda`` -> this process's GPU (``cuda:LOCAL_RANK``) when several ranks."""
        if self.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return device

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only (e.g. cleaning the output) and hand its result to all."""
        if self.world == 1:
            return fn()
        box: list[Any] = [fn() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share(self, keys: Sequence[str], paths: Mapping[str, str],
              known: Mapping[str, float] | None = None) -> list[str]:
        """This rank's keys: a duration-balanced, disjoint share of ``keys``.

        Headers are read once in all: each rank reads every ``world``-th and the durations
        are exchanged.
        """
        if self.world == 1:
            return list(keys)
        mine = durations_of([paths[k] for k in keys[self.rank::self.world]], known)
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, mine)
        seconds = [0.0] * len(keys)
        for r, part in enumerate(parts):
            seconds[r::self.world] = part
        return [keys[i] for i in balanced_shares(seconds, self.world)[self.rank]]

    def total(self, failures: list, seconds: float) -> tuple[list, float]:
        """Every rank's failures and audio seconds, summed (after all ranks are done)."""
        if self.world == 1:
            return failures, seconds
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, (failures, seconds))
        return [f for part in parts for f in part[0]], sum(part[1] for part in parts)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
