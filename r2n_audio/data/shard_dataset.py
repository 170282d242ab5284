"""Training crops streamed from tar shards, split across DDP ranks and DataLoader workers.

Epoch semantics
---------------
An epoch is one pass over every utterance of the shard list, each utterance exactly once
across all ranks and workers. Each epoch the shard order is reshuffled (seed, epoch) and the
utterances, in that order, form one sequence of U items cut into ``world_size`` contiguous,
near-equal parts (a shard on a boundary is read in part by both ranks, each skipping the
other's utterances). Every rank makes the same number of steps, ``S = ceil(ceil(U / W) / B)``,
so DDP never waits on a rank with an extra batch: the rank's part is cut into ``S`` batches of
``B`` or a few fewer crops (sizes differ by at most one within a rank). The ``S`` batches are
split into contiguous blocks, one per DataLoader worker; a worker streams its shards once
through a shuffle buffer, so no utterance is read twice and none is dropped.

Crops, speed perturbation and noise/reverberation are those of the file reader
(:func:`r2n_audio.data.datasets.augmented_crop`), seeded per worker from the DataLoader's
worker seed as there.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from r2n_audio.data.datasets import SpeakerClasses, _WorkerRandom, augmented_crop
from r2n_audio.data.shards import iter_shard, read_shard_list
from r2n_audio.errors import DataFormatError, R2NError

__all__ = ["ShardCropDataset", "epoch_plan"]


def _pieces(order: list[int], counts: list[int], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(shard, first, stop) pieces covering positions ``lo``..``hi`` of the shards in ``order``."""
    pieces, start = [], 0
    for shard in order:
        stop = start + counts[shard]
        if stop > lo and start < hi:
            pieces.append((shard, max(lo, start) - start, min(hi, stop) - start))
        start = stop
    return pieces


def epoch_plan(counts: list[int], epoch: int, seed: int, rank: int, world: int, workers: int,
               batch_size: int) -> list[tuple[list[tuple[int, int, int]], list[int]]]:
    """What each DataLoader worker of ``rank`` reads in ``epoch``: per worker, its shard pieces
    ``(shard index, first utterance, stop)`` and its batch sizes (see the module doc).

    Every rank gets ``ceil(ceil(U / world) / batch_size)`` batches in all.
    """
    total = int(sum(counts))
    if total < world or batch_size < 2:  # else some rank would get an empty batch
        raise R2NError(f"shards of {total} utterances cannot feed {world} ranks with batches "
                       f"of {batch_size}: need at least one utterance per rank and batch "
                       f"size >= 2")
    order = np.random.default_rng([seed, epoch, 11]).permutation(len(counts)).tolist()
    lo, hi = total * rank // world, total * (rank + 1) // world
    steps = max(1, math.ceil(math.ceil(total / world) / batch_size))
    n = hi - lo
    bounds = [lo + n * j // steps for j in range(steps + 1)]  # batch j: bounds[j]..bounds[j+1]
    plan = []
    for w in range(workers):
        first, last = steps * w // workers, steps * (w + 1) // workers
        sizes = [bounds[j + 1] - bounds[j] for j in range(first, last)]
        plan.append((_pieces(order, counts, bounds[first], bounds[last]), sizes))
    return plan


def _pcm16(data: bytes) -> tuple[np.ndarray, int] | None:
    """``(samples (N,) int16, rate)`` of a mono 16-bit PCM wav held in memory, without a
    decoder (what ``prepare shards --format wav`` writes), or None for anything else."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk == b"fmt ":
            fmt = data[pos + 8:pos + 24]
        elif chunk == b"data":
            mono16 = fmt is not None and fmt[0:2] == b"\x01\x00" and fmt[2:4] == b"\x01\x00" \
                and fmt[14:16] == b"\x10\x00"
            if not mono16:
                return None
            end = min(len(data), pos + 8 + size) & ~1
            return (np.frombuffer(data, np.int16, (end - pos - 8) // 2, pos + 8),
                    int.from_bytes(fmt[4:8], "little"))
        pos += 8 + size + (size & 1)
    return None


def _read_crop(data: bytes, length: int, rng: np.random.Generator) -> Tensor:
    """A random ``length``-sample stretch (the whole utterance when not longer) of in-memory
    audio; only that stretch is decoded. The offset is drawn as
    :func:`r2n_audio.audio.load_random_segment` draws it, so the same generator state cuts
    the same crop from a shard as from the file."""
    pcm = _pcm16(data)
    if pcm is not None:  # a slice of the buffer: ~4x soundfile's callbacks on BytesIO
        samples, rate = pcm
        start = 0
        if len(samples) > length:
            start = round(float(rng.uniform(0.0, len(samples) / rate - length / rate)) * rate)
        crop = samples[start:start + length].astype(np.float32)
        return torch.from_numpy(crop * np.float32(1.0 / 32768.0))
    with sf.SoundFile(io.BytesIO(data)) as f:
        rate, frames = f.samplerate, f.frames
        if frames > length:
            f.seek(round(float(rng.uniform(0.0, frames / rate - length / rate)) * rate))
        wave = f.read(min(length, frames), dtype="float32", always_2d=True)
    return torch.from_numpy(wave[:, 0] if wave.shape[1] == 1 else wave.mean(axis=1))


class ShardCropDataset(SpeakerClasses, IterableDataset):
    """Random fixed-length training crops from the shards of a shard list, in batches.

    Parameters
    ----------
    shard_list : path
        ``shards.txt`` of ``r2n-audio prepare shards`` (or a list of some of its shards).
    crop_seconds, sample_rate, augment, speed_perturb, seed
        As in :class:`r2n_audio.data.datasets.TrainCropDataset` (``sample_rate`` must be the
        shards' rate).
    batch_size : int
        Crops per batch (batches are made here: use ``DataLoader(batch_size=None)``).
    shuffle_buffer : int
        Utterances held (compressed) per worker to shuffle the stream: about 0.25 MB each
        for VoxCeleb2 in FLAC.

    Items are batches ``(waveforms (B, N) float32, labels (B,) int64, keys list of B str)``.
    Call :meth:`set_epoch` before each epoch (from the process that creates the DataLoader's
    iterator: it also reads the rank from ``torch.distributed``).
    """

    def __init__(self, shard_list: str | os.PathLike, crop_seconds: float = 2.0,
                 sample_rate: int = 16000, augment: Callable[[Tensor], Tensor] | None = None,
                 speed_perturb: Callable | None = None, seed: int = 0, batch_size: int = 128,
                 shuffle_buffer: int = 1000) -> None:
        self.shards = read_shard_list(shard_list)
        if self.shards.sample_rate != sample_rate:
            raise DataFormatError(shard_list, f"shards are at {self.shards.sample_rate} Hz, "
                                              f"training at {sample_rate} Hz; rewrite them")
        if crop_seconds <= 0 or batch_size < 1:
            raise R2NError("crop_seconds must be positive and batch_size >= 1")
        self.speakers = self.shards.speakers
        self._label = {s: i for i, s in enumerate(self.speakers)}
        self.crop_samples = int(round(crop_seconds * sample_rate))
        self.augment, self.speed_perturb = augment, speed_perturb
        self.batch_size, self.shuffle_buffer, self.seed = int(batch_size), shuffle_buffer, seed
        self._random = _WorkerRandom(seed)
        self.epoch, self.rank, self.world = 0, 0, 1

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch (shard order) and read this process's rank and world size."""
        self.epoch = int(epoch)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank = torch.distributed.get_rank()
            self.world = torch.distributed.get_world_size()

    def __len__(self) -> int:
        """Batches per rank and epoch (the world size read now: Lightning asks before the
        first epoch, to size the LR schedule)."""
        self.set_epoch(self.epoch)
        per_rank = math.ceil(self.shards.utterances / self.world)
        return max(1, math.ceil(per_rank / self.batch_size))

    def _stream(self, pieces, rng: np.random.Generator) -> Iterator[tuple]:
        """The worker's utterances through a shuffle buffer."""
        buffer: list[tuple] = []
        for shard, first, stop in pieces:
            for item in iter_shard(self.shards.paths[shard], first, stop):
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(item)
                    continue
                j = int(rng.integers(len(buffer)))
                buffer[j], item = item, buffer[j]
                yield item
        rng.shuffle(buffer)
        yield from buffer

    def _crop(self, item: tuple, rng: np.random.Generator) -> tuple[Tensor, int]:
        key, speaker, _, _, data = item
        if speaker not in self._label:
            raise DataFormatError(key, f"speaker {speaker!r} is not in the shard index")
        return augmented_crop(lambda n: _read_crop(data, n, rng), self._label[speaker],
                              self.crop_samples, self.num_speakers, self.augment,
                              self.speed_perturb)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, list[str]]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = self._random.get(self.augment, self.speed_perturb)
        pieces, sizes = epoch_plan(self.shards.counts, self.epoch, self.seed, self.rank,
                                   self.world, workers, self.batch_size)[worker]
        stream = self._stream(pieces, rng)
        for size in sizes:
            items = [next(stream) for _ in range(size)]
            crops = [self._crop(item, rng) for item in items]
            yield (torch.stack([c[0] for c in crops]),
                   torch.tensor([c[1] for c in crops], dtype=torch.long),
                   [item[0] for item in items])
