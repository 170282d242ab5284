"""``SpeakerDataModule``: training crops and a held-out trial list from Kaldi-style data dirs.

A data dir is any folder with ``wav.scp`` and ``utt2spk`` (the layout of ``r2n-audio
make-corpus``, ``r2n-audio prepare voxceleb`` and a user's own corpus). Workers only read and
crop audio (and apply waveform augmentation); the fbank runs batched inside the model, on the
training device.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, RandomSampler

from r2n_audio.errors import DataFormatError

__all__ = ["SpeakerDataModule", "EpochSeededLoader", "BatchedEvalDataset"]


class EpochSeededLoader(DataLoader):
    """A shuffling DataLoader whose randomness is a function of ``seed`` and the epoch.

    Each ``iter()`` reseeds two generators from ``seed`` and ``epoch_fn()`` (the number of the
    pass about to start): the sampler's, which draws the permutation exactly as a
    ``DistributedSampler`` with the same seed does (``randperm`` seeded with ``seed + epoch``),
    and the loader's, which draws the base seed of the worker processes (hence the crops and
    augmentation choices made in workers). A run resumed at epoch ``k`` therefore reads exactly
    the batches the interrupted run would have read. Under DDP, Lightning swaps the sampler for
    a ``DistributedSampler`` seeded by ``seed_everything``; the rank enters the worker seeds.
    """

    def __init__(self, dataset, *args, seed: int = 0, epoch_fn=None, **kwargs) -> None:
        kwargs.setdefault("generator", torch.Generator())
        if kwargs.pop("shuffle", False):
            kwargs["sampler"] = RandomSampler(dataset, generator=torch.Generator())
        super().__init__(dataset, *args, **kwargs)
        self.seed, self.epoch_fn = int(seed), epoch_fn

    def __iter__(self):
        epoch = self.epoch_fn() if self.epoch_fn else 0
        if isinstance(self.sampler, RandomSampler) and self.sampler.generator is not None:
            self.sampler.generator.manual_seed(self.seed + epoch)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        self.generator.manual_seed(self.seed + epoch + 1_000_003 * (rank + 1))
        if hasattr(self.dataset, "set_epoch"):  # shard streams: order and rank split
            self.dataset.set_epoch(epoch)
        return super().__iter__()


class BatchedEvalDataset(Dataset):
    """Pre-bucketed evaluation batches as dataset items: item ``i`` is the collated
    :class:`~r2n_audio.data.datasets.EvalBatch` of bucket ``i``.

    Handing whole batches to a ``DataLoader(batch_size=None)`` lets Lightning shard them over
    DDP ranks with its ordinary ``DistributedSampler`` (a custom batch sampler it cannot).
    """

    def __init__(self, dataset, max_seconds: float = 300.0, max_batch_size: int | None = 64):
        from r2n_audio.data.datasets import BucketBatchSampler

        self.dataset = dataset
        self.batches = list(BucketBatchSampler(dataset.durations(), max_seconds, max_batch_size))

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        from r2n_audio.data.datasets import collate_eval

        return collate_eval([self.dataset[j] for j in self.batches[i]])


class SpeakerDataModule(pl.LightningDataModule):
    """Training and validation data from Kaldi-style data dirs.

    Parameters
    ----------
    train_dir : str, optional
        Folder with ``wav.scp`` and ``utt2spk`` (and ``utt2dur``, which spares the audio
        headers) of the training utterances.
    train_shards : str, optional
        Instead of ``train_dir``: a shard list of ``r2n-audio prepare shards``. Each epoch
        reads every utterance once across all ranks and workers (see
        :mod:`r2n_audio.data.shard_dataset`); same crops and augmentation as from files.
    val_dir : str, optional
        Folder with the ``wav.scp`` of the held-out utterances; with ``val_trials`` the model
        logs ``val/eer`` and ``val/min_dcf_*`` each validation epoch.
    val_trials : str, optional
        Trial list (Kaldi or VoxCeleb format) over ``val_dir`` utterances.
    crop_seconds : float
        Training crop length (2 s in WeSpeaker's VoxCeleb recipe, 6 s in LM fine-tuning).
    batch_size : int
        Crops per batch on each device (the global batch is ``batch_size * world size``).
    num_workers : int
        DataLoader worker processes reading audio.
    sample_rate : int
    speed_perturb : bool
        Speeds 0.9 / 1.0 / 1.1, each speed a new class (so ``num_classes = 3 * speakers``).
    musan_dir, rir_dir : str, optional
        Noise (MUSAN layout: ``noise/``, ``music/``, ``speech/``) and RIR folders (use
        ``RIRS_NOISES/simulated_rirs``, as WeSpeaker and 3D-Speaker do); when given, one of
        them is applied to a crop with probability ``aug_prob`` (WeSpeaker's scheme). Either
        may be a shard list instead (``r2n-audio prepare shards`` of a data dir whose
        ``utt2spk`` gives each MUSAN file its category), loaded into memory.
    aug_prob : float
    musan_snr : dict, optional
        MUSAN categories used and their SNR ranges in dB, e.g. ``{noise: [0, 15]}``; default
        WeSpeaker's (:data:`~r2n_audio.features.augment.MUSAN_SNR`: noise 0-15, music 5-15,
        speech 10-30). 3D-Speaker uses 0-15 for all three.
    babble_speakers : (int, int)
        Speech files summed into one babble, drawn in this range (WeSpeaker: one; Kaldi: 3-7).
    noise_weighting : str
        ``"files"``: a category in proportion to its file count (one file drawn from all of
        MUSAN, WeSpeaker and 3D-Speaker); ``"categories"``: each category equally likely.
    reverb_then_noise : bool
        Add "reverberation, then noise" as a third, equally likely choice (3D-Speaker).
    speed_prob : float
        With ``speed_perturb``: probability that a crop is played at 0.9 or 1.1 (2/3: all
        three speeds equally likely). 0 keeps every speed class in the head but perturbs no
        crop, as 3D-Speaker's large-margin stage does.
    val_max_seconds : float
        Padded seconds of audio per validation batch.
    seed : int
        Shuffling and crop/augmentation seed.
    shuffle_buffer : int
        Utterances per worker in the shuffle buffer when reading shards.
    aug_in_memory : bool
        Decode the noise and RIR files once into memory (int16, shared by forked workers)
        instead of reading a stretch of a file per crop.
    """

    def __init__(self, train_dir: str | None = None, val_dir: str | None = None,
                 val_trials: str | None = None,
                 crop_seconds: float = 2.0, batch_size: int = 128, num_workers: int = 4,
                 sample_rate: int = 16000, speed_perturb: bool = False,
                 musan_dir: str | None = None, rir_dir: str | None = None, aug_prob: float = 0.6,
                 musan_snr: dict[str, tuple[float, float]] | None = None,
                 babble_speakers: tuple[int, int] = (1, 1), noise_weighting: str = "files",
                 reverb_then_noise: bool = False, speed_prob: float = 2.0 / 3.0,
                 val_max_seconds: float = 300.0, seed: int = 0,
                 train_shards: str | None = None, shuffle_buffer: int = 1000,
                 aug_in_memory: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        if (train_dir is None) == (train_shards is None):
            raise DataFormatError(train_shards or train_dir or "data", "give one of train_dir "
                                  "(a data dir) and train_shards (a shard list)")
        self.train_dir, self.val_dir, self.val_trials = train_dir, val_dir, val_trials
        self._num_speakers: int | None = None
        self._passes = 0
        self.train_dataset = None
        self.val_dataset = None
        self.trials = None

    # ------------------------------------------------------------------ speaker count
    def _data_file(self, folder: str | os.PathLike, name: str) -> Path:
        path = Path(folder) / name
        if not path.is_file():
            raise DataFormatError(path, f"missing: a data dir needs wav.scp and utt2spk (make "
                                        f"one with `r2n-audio make-corpus` or `r2n-audio prepare`)")
        return path

    @property
    def num_speakers(self) -> int:
        """Distinct speakers of the training utterances (read from ``utt2spk`` once)."""
        if self._num_speakers is None and self.hparams.train_shards:
            from r2n_audio.data.shards import read_shard_list

            self._num_speakers = len(read_shard_list(self.hparams.train_shards).speakers)
        if self._num_speakers is None:
            from r2n_audio.data.manifests import read_utt2spk, read_wav_scp

            wavs = read_wav_scp(self._data_file(self.train_dir, "wav.scp"))
            spk = read_utt2spk(self._data_file(self.train_dir, "utt2spk"))
            self._num_speakers = len({spk[k] for k in wavs if k in spk})
        return self._num_speakers

    @property
    def num_classes(self) -> int:
        """Classifier outputs: speakers, times 3 with speed perturbation."""
        return self.num_speakers * (3 if self.hparams.speed_perturb else 1)

    # ------------------------------------------------------------------ datasets
    def _waveform_augment(self):
        from r2n_audio.features.augment import AddNoise, AugmentChain, OneOf, Reverberate

        hp, seed = self.hparams, self.hparams.seed
        noise = dict(categories=hp.musan_snr, babble_speakers=tuple(hp.babble_speakers),
                     weighting=hp.noise_weighting)
        members = []
        if hp.musan_dir:
            members.append(AddNoise(hp.musan_dir, sample_rate=hp.sample_rate, **noise,
                                    seed=seed + 1, preload=hp.aug_in_memory))
        if hp.rir_dir:
            members.append(Reverberate(hp.rir_dir, sample_rate=hp.sample_rate, seed=seed + 2,
                                       preload=hp.aug_in_memory))
        if hp.reverb_then_noise and len(members) == 2:  # the same two modules, in a row
            members.append(AugmentChain(members[1], members[0]))
        return OneOf(*members, p=hp.aug_prob, seed=seed + 3) if members else None

    def setup(self, stage: str | None = None) -> None:
        from r2n_audio.data.datasets import EvalDataset, TrainCropDataset
        from r2n_audio.features.augment import SpeedPerturb

        hp = self.hparams
        if stage in (None, "fit") and self.train_dataset is None:
            speed = SpeedPerturb(p=hp.speed_prob, sample_rate=hp.sample_rate, seed=hp.seed + 4) \
                if hp.speed_perturb else None
            if hp.train_shards:
                self._setup_shards(speed)
            else:
                self._setup_files(TrainCropDataset, speed)
        if stage in (None, "fit", "validate") and self.val_trials and self.val_dataset is None:
            self._setup_validation(EvalDataset)

    def _setup_shards(self, speed) -> None:
        from r2n_audio.data.shard_dataset import ShardCropDataset

        hp = self.hparams
        self.train_dataset = ShardCropDataset(
            hp.train_shards, crop_seconds=hp.crop_seconds, sample_rate=hp.sample_rate,
            augment=self._waveform_augment(), speed_perturb=speed, seed=hp.seed,
            batch_size=hp.batch_size, shuffle_buffer=hp.shuffle_buffer)
        self._num_speakers = self.train_dataset.num_speakers
        rank_zero_info(f"training shards {hp.train_shards}: {self.train_dataset.shards.utterances}"
                       f" utterances in {len(self.train_dataset.shards.paths)} shards, "
                       f"{self.num_speakers} speakers, {self.num_classes} classes")

    def _setup_files(self, dataset_cls, speed) -> None:
        hp = self.hparams
        utt2dur = Path(self.train_dir) / "utt2dur"
        self.train_dataset = dataset_cls(
            self._data_file(self.train_dir, "wav.scp"),
            self._data_file(self.train_dir, "utt2spk"), crop_seconds=hp.crop_seconds,
            sample_rate=hp.sample_rate, augment=self._waveform_augment(),
            speed_perturb=speed, seed=hp.seed, durations=utt2dur if utt2dur.is_file() else None)
        self._num_speakers = self.train_dataset.num_speakers
        rank_zero_info(f"training data {self.train_dir}: {len(self.train_dataset)} "
                       f"utterances, {self.num_speakers} speakers, {self.num_classes} classes")

    def _setup_validation(self, eval_dataset_cls) -> None:
        from r2n_audio.data.manifests import read_trials, read_wav_scp

        if not self.val_dir:
            raise DataFormatError(self.val_trials, "val_trials needs val_dir (the folder "
                                                   "with the wav.scp of the trial utterances)")
        self.trials = read_trials(self.val_trials)
        wavs = read_wav_scp(self._data_file(self.val_dir, "wav.scp"))
        needed = set(self.trials.keys())
        missing = sorted(needed - set(wavs))
        if missing:
            raise DataFormatError(self.val_trials, f"{len(missing)} trial utterances are not in "
                                                   f"{self.val_dir}/wav.scp, e.g. {missing[:3]}")
        utt2dur = Path(self.val_dir) / "utt2dur"  # bucketing without reading headers
        dataset = eval_dataset_cls({k: v for k, v in wavs.items() if k in needed},
                                   self.hparams.sample_rate,
                                   utt2dur=utt2dur if utt2dur.is_file() else None)
        self.val_dataset = BatchedEvalDataset(dataset, self.hparams.val_max_seconds)

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        from r2n_audio.data.datasets import collate_train

        hp = self.hparams
        if hp.train_shards:  # the dataset batches, splits by rank and worker, and shuffles
            return EpochSeededLoader(self.train_dataset, batch_size=None,
                                     num_workers=hp.num_workers,
                                     pin_memory=torch.cuda.is_available(),
                                     prefetch_factor=4 if hp.num_workers > 0 else None,
                                     seed=hp.seed, epoch_fn=self._next_pass)
        # Workers are not persistent: each epoch's workers are seeded afresh (see
        # EpochSeededLoader), so a resumed run draws the same crops. With num_workers=0 the
        # crops come from one generator in this process and are not replayed on resume.
        return EpochSeededLoader(self.train_dataset, batch_size=hp.batch_size, shuffle=True,
                                 num_workers=hp.num_workers, collate_fn=collate_train,
                                 drop_last=True, pin_memory=torch.cuda.is_available(),
                                 prefetch_factor=4 if hp.num_workers > 0 else None,
                                 seed=hp.seed, epoch_fn=self._next_pass)

    def _next_pass(self) -> int:
        # Counted here and saved in checkpoints (state_dict) rather than read from the
        # trainer, whose epoch counter is not yet advanced when a resumed run starts reading.
        self._passes += 1
        return self._passes - 1

    def state_dict(self) -> dict:
        return {"train_passes": self._passes}

    def load_state_dict(self, state_dict: dict) -> None:
        self._passes = int(state_dict.get("train_passes", 0))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_dataset is None:
            # No trial list: no validation. Lightning warns about the empty list; the
            # absence is intended here, so that one warning is silenced.
            warnings.filterwarnings("ignore", message="Total length of `list` across ranks")
            return []
        return DataLoader(self.val_dataset, batch_size=None, shuffle=False,
                          num_workers=min(self.hparams.num_workers, 2))
