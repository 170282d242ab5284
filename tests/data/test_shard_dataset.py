"""Training crops from shards: the epoch split over ranks and workers (every utterance exactly
once, equal steps per rank), real 2-rank x 2-worker gloo runs, and crops equal to the file
reader's for the same generator state."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from r2n_audio.audio import load_random_segment
from r2n_audio.data.manifests import read_utt2spk, read_wav_scp
from r2n_audio.data.shard_dataset import ShardCropDataset, _read_crop, epoch_plan
from r2n_audio.data.shards import iter_shard, write_shards
from r2n_audio.errors import R2NError


@pytest.fixture(scope="module")
def shard_list(tiny_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    write_shards(tiny_corpus / "train", out, shard_size=5)
    return out / "shards.txt"


@pytest.mark.parametrize("counts", [[5, 5, 5, 5, 5, 5, 2], [1000, 1000, 37], [3], [7, 1, 9]])
@pytest.mark.parametrize("world,workers,batch", [(1, 1, 4), (2, 2, 4), (3, 2, 5), (8, 4, 2)])
def test_plan_covers_each_utterance_once_with_equal_steps(counts, world, workers, batch):
    if sum(counts) < world:
        with pytest.raises(R2NError, match="cannot feed 8 ranks"):
            epoch_plan(counts, 0, 3, 0, world, workers, batch)
        return
    for epoch in (0, 1):
        seen, steps = [], []
        for rank in range(world):
            plan = epoch_plan(counts, epoch, seed=3, rank=rank, world=world, workers=workers,
                              batch_size=batch)
            steps.append(sum(len(sizes) for _, sizes in plan))
            for pieces, sizes in plan:
                items = [(s, i) for s, a, b in pieces for i in range(a, b)]
                assert len(items) == sum(sizes) and all(0 < z <= batch for z in sizes)
                seen += items
        assert sorted(seen) == [(s, i) for s, c in enumerate(counts) for i in range(c)]
        per_rank = -(-sum(counts) // world)
        assert steps == [max(1, -(-per_rank // batch))] * world


def test_shard_order_changes_with_the_epoch():
    orders = [[p[0] for p in epoch_plan([2] * 40, e, 0, 0, 1, 1, 4)[0][0]] for e in (0, 1)]
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(40))
    assert orders[0] != orders[1]


def test_crop_equals_the_file_readers_for_the_same_generator(tiny_corpus, shard_list):
    wavs = read_wav_scp(tiny_corpus / "train" / "wav.scp")
    path = Path(shard_list).parent / "shard-000000.tar"
    for key, _, _, _, data in iter_shard(path):
        for length in (4000, 16000, 64000):  # shorter and longer than the utterance
            from_shard = _read_crop(data, length, np.random.default_rng(9))
            from_file = load_random_segment(wavs[key], length, 16000, np.random.default_rng(9))
            torch.testing.assert_close(from_shard, from_file, rtol=0, atol=0)


def test_batches_labels_and_augmentation(tiny_corpus, shard_list):
    from r2n_audio.features.augment import AddNoise, OneOf, Reverberate, SpeedPerturb

    augment = OneOf(AddNoise(tiny_corpus / "musan", preload=True),
                    Reverberate(tiny_corpus / "rirs", preload=True), p=1.0, seed=1)
    data = ShardCropDataset(shard_list, crop_seconds=0.5, batch_size=4, augment=augment,
                            speed_perturb=SpeedPerturb(seed=2), shuffle_buffer=6)
    speakers = read_utt2spk(tiny_corpus / "train" / "utt2spk")
    batches = list(data)
    assert len(batches) == len(data) == 8
    keys = [k for _, _, ks in batches for k in ks]
    assert sorted(keys) == sorted(speakers)
    for waves, labels, ks in batches:
        assert waves.shape == (4, 8000) and torch.isfinite(waves).all()
        for label, key in zip(labels.tolist(), ks):
            assert data.speakers[label % data.num_speakers] == speakers[key]
    assert data.num_classes == 3 * 8 and {lab // 8 for b in batches for lab in b[1].tolist()} \
        == {0, 1, 2}


def test_preloaded_noise_equals_noise_read_from_files(tiny_corpus):
    from r2n_audio.features.augment import AddNoise, Reverberate

    wave = torch.randn(16000) * 0.1
    for cls, folder in ((AddNoise, "musan"), (Reverberate, "rirs")):
        outputs = [cls(tiny_corpus / folder, seed=4, preload=preload)(wave)
                   for preload in (False, True)]
        torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, listing: str, out: str) -> None:
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    data = ShardCropDataset(listing, crop_seconds=0.25, batch_size=3, shuffle_buffer=4)
    record = {"len": len(data)}  # asked before any epoch, as Lightning asks
    for epoch in (0, 1):
        data.set_epoch(epoch)
        loader = DataLoader(data, batch_size=None, num_workers=2)
        record[epoch] = [batch[2] for batch in loader]
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


def test_two_ranks_two_workers_see_every_utterance_once_per_epoch(tiny_corpus, shard_list,
                                                                  tmp_path):
    import torch.multiprocessing as mp

    # fork: the ranks start in a fraction of a second instead of re-importing torch
    mp.start_processes(_rank_main, args=(2, _free_port(), str(shard_list), str(tmp_path)),
                       nprocs=2, join=True, start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    everyone = sorted(read_utt2spk(tiny_corpus / "train" / "utt2spk"))
    for epoch in ("0", "1"):
        batches = [r[epoch] for r in ranks]
        assert len(batches[0]) == len(batches[1]) == 6  # ceil(ceil(32 / 2) / 3) steps each
        keys = [k for rank in batches for batch in rank for k in batch]
        assert sorted(keys) == everyone  # each utterance exactly once across ranks and workers
    assert ranks[0]["len"] == ranks[1]["len"] == 6
    assert ranks[0]["0"] != ranks[0]["1"]


def _augmentation_shards(folder: Path, out: Path, group) -> Path:
    """Shards of every audio file under ``folder``, the speaker field = ``group(relative)``."""
    files = sorted(p for p in folder.rglob("*.wav"))
    data = out / "data"
    data.mkdir(parents=True)
    keys = {p.relative_to(folder).with_suffix("").as_posix(): p for p in files}
    (data / "wav.scp").write_text("".join(f"{k} {p}\n" for k, p in keys.items()))
    (data / "utt2spk").write_text("".join(f"{k} {group(k)}\n" for k in keys))
    write_shards(data, out / "shards", shard_size=7)
    return out / "shards" / "shards.txt"


def test_noise_and_rir_sets_from_shards_equal_the_folders(tiny_corpus, tmp_path):
    from r2n_audio.features.augment import AddNoise, Reverberate

    musan = _augmentation_shards(tiny_corpus / "musan", tmp_path / "musan",
                                 lambda k: k.split("/")[0])
    rirs = _augmentation_shards(tiny_corpus / "rirs", tmp_path / "rirs", lambda k: "rir")
    wave = torch.randn(16000) * 0.1
    for cls, folder, listing in ((AddNoise, "musan", musan), (Reverberate, "rirs", rirs)):
        from_folder = cls(tiny_corpus / folder, seed=4, preload=True)
        from_shards = cls(listing, seed=4)
        for _ in range(5):
            torch.testing.assert_close(from_shards(wave), from_folder(wave), rtol=0, atol=0)
