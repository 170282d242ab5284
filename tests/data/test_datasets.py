"""Training crops, evaluation items, collation and length bucketing, checked against the files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from r2n_audio.data.datasets import (BucketBatchSampler, EvalDataset, TrainCropDataset,
                                     collate_eval, collate_train)
from r2n_audio.errors import DataFormatError
from r2n_audio.features.augment import SpeedPerturb


@pytest.fixture
def data_dir(make_wav, rng, tmp_path):
    """Three speakers; one file shorter than the crop; paths relative to the data dir."""
    spec = {"bob/u1": ("bob", 3.0), "bob/u2": ("bob", 0.5), "amy/u1": ("amy", 2.5),
            "cat/u1": ("cat", 4.0)}
    for key, (_, seconds) in spec.items():
        make_wav(f"wav/{key}.wav", data=0.3 * rng.uniform(-1, 1, int(seconds * 16000)))
    (tmp_path / "wav.scp").write_text("".join(f"{k} wav/{k}.wav\n" for k in spec))
    (tmp_path / "utt2spk").write_text("".join(f"{k} {s}\n" for k, (s, _) in spec.items()))
    return tmp_path


def _file(data_dir, key):
    return torch.from_numpy(sf.read(data_dir / "wav" / f"{key}.wav", dtype="float32")[0])


def _find(segment, wave):
    """Start of ``segment`` inside ``wave`` (brute force), or -1."""
    n = segment.numel()
    for start in torch.nonzero(wave[:wave.numel() - n + 1] == segment[0]).flatten().tolist():
        if torch.equal(wave[start:start + n], segment):
            return start
    return -1


def test_train_crops_are_file_segments_with_speaker_index(data_dir):
    ds = TrainCropDataset(data_dir / "wav.scp", data_dir / "utt2spk", crop_seconds=1.0)
    assert ds.speakers == ["amy", "bob", "cat"] and ds.num_speakers == 3 == ds.num_classes
    assert len(ds) == 4
    for i, key in enumerate(ds.keys):
        wave, label = ds[i]
        assert wave.shape == (16000,) and wave.dtype == torch.float32
        assert ds.speakers[label] == key.split("/")[0]
        original = _file(data_dir, key)
        if original.numel() >= 16000:
            assert _find(wave, original) >= 0
        else:  # repetition padding (WeSpeaker): the file tiled from its start
            reference = np.tile(original.numpy(), 3)[:16000]
            np.testing.assert_array_equal(wave.numpy(), reference)


def test_train_crops_reproducible_and_different_per_worker(data_dir):
    scp = {f"x{i}": str(data_dir / "wav" / "cat" / "u1.wav") for i in range(8)}
    utt2spk = {k: "cat" for k in scp}

    def crops():
        torch.manual_seed(0)
        ds = TrainCropDataset(scp, utt2spk, crop_seconds=0.5, seed=3)
        loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_train)
        return torch.cat([w for w, _ in loader])

    first, second = crops(), crops()
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    # Batch 0 comes from worker 0 and batch 1 from worker 1: their first draws must differ.
    assert not torch.equal(first[0], first[2]), "workers drew identical crops"


def test_speed_perturbation_extends_labels(data_dir):
    seen = []
    ds = TrainCropDataset(data_dir / "wav.scp", data_dir / "utt2spk", crop_seconds=1.0,
                          speed_perturb=SpeedPerturb(p=1.0, seed=0),
                          augment=lambda w: seen.append(w.numel()) or w)
    assert ds.num_classes == 9
    for i in range(len(ds)):
        wave, label = ds[i]
        assert wave.shape == (16000,)
        assert label % 3 == ds.labels[i] and label >= 3  # p=1: never the original speed
    assert seen == [16000] * len(ds)  # the augmentation runs on the final crop


def test_missing_speaker_is_a_data_error(data_dir):
    (data_dir / "utt2spk").write_text("bob/u1 bob\n")
    with pytest.raises(DataFormatError, match="no speaker"):
        TrainCropDataset(data_dir / "wav.scp", data_dir / "utt2spk")


def test_eval_dataset_and_collate(data_dir):
    (data_dir / "eval.scp").write_text("a wav/bob/u2.wav\nb wav/amy/u1.wav\nzz missing.wav\n")
    ds = EvalDataset(data_dir / "eval.scp", errors="return")
    assert ds.keys == ["a", "b", "zz"]
    assert ds.durations() == pytest.approx([0.5, 2.5, 0.0])
    batch = collate_eval([ds[i] for i in range(3)])
    assert batch.keys == ["a", "b"] and list(batch.failed) == ["zz"]
    assert "missing.wav" in batch.failed["zz"]
    assert batch.waveforms.shape == (2, 40000) and batch.lengths.tolist() == [8000, 40000]
    torch.testing.assert_close(batch.waveforms[0, :8000], _file(data_dir, "bob/u2"))
    assert not batch.waveforms[0, 8000:].any()
    with pytest.raises(Exception, match="missing.wav"):
        EvalDataset(data_dir / "eval.scp")[2]


def test_bucket_sampler_bounds_padded_seconds(rng):
    durations = rng.uniform(0.5, 20.0, 200).tolist() + [70.0]
    sampler = BucketBatchSampler(durations, max_seconds=60.0, max_batch_size=16)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for batch in batches:
        longest = max(durations[i] for i in batch)
        assert len(batch) <= 16
        assert len(batch) * longest <= 60.0 or len(batch) == 1
    assert batches[0] == [200]  # longest first, alone
    # Greedy packing over sorted lengths: no batch could take the next item.
    order = [i for b in batches for i in b]
    assert [durations[i] for i in order] == sorted(durations, reverse=True)
