"""Datasets and batching for training (random fixed-length crops) and evaluation (whole files).

Audio is decoded in DataLoader workers with :func:`r2n_audio.audio.load_audio`; datasets return
waveforms and the features are computed batched on the training device by a front-end
(:mod:`r2n_audio.features.frontend`), never here.

Randomness (crop positions, speed and augmentation choices) comes from a generator per worker
process seeded from ``(seed, worker seed)``; the DataLoader derives worker seeds from torch's
global RNG, so ``torch.manual_seed`` (or Lightning's ``seed_everything``) makes a run
reproducible, and every worker draws different crops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler, get_worker_info

from r2n_audio.audio import AudioError, audio_duration, load_audio, load_random_segment
from r2n_audio.data.bucketing import duration_batches
from r2n_audio.data.manifests import read_utt2dur, read_utt2spk, read_wav_scp, utt2dur_line
from r2n_audio.errors import DataFormatError, R2NError

__all__ = ["SpeakerClasses", "TrainCropDataset", "EvalDataset", "EvalBatch", "BucketBatchSampler",
           "collate_train", "collate_eval", "repeat_pad", "augmented_crop"]


def _table(source: str | os.PathLike | Mapping[str, str], reader) -> dict[str, str]:
    return dict(source) if isinstance(source, Mapping) else reader(source)


def repeat_pad(wave: Tensor, length: int) -> Tensor:
    """Tile ``wave`` (N,) until it has ``length`` samples and cut there (WeSpeaker's padding)."""
    if wave.numel() >= length:
        return wave[:length]
    return wave.repeat(math.ceil(length / wave.numel()))[:length]


def augmented_crop(read: Callable[[int], Tensor], label: int, crop_samples: int,
                   num_speakers: int, augment: Callable[[Tensor], Tensor] | None = None,
                   speed_perturb: Callable | None = None) -> tuple[Tensor, int]:
    """One training item: a crop, speed-perturbed and augmented, with its class label.

    Shared by the file reader (:class:`TrainCropDataset`) and the shard reader
    (:mod:`r2n_audio.data.shards`), so both draw the same crops and augmentation.

    Parameters
    ----------
    read : callable
        ``read(num_samples) -> wave (M,)``: a random stretch of the utterance, ``M <=
        num_samples`` when the utterance is shorter (it is then tiled).
    label : int
        Speaker index.
    crop_samples : int
        Output length N.
    num_speakers : int
        Speed ``k`` of speaker ``s`` is class ``s + k * num_speakers``.
    augment, speed_perturb
        As in :class:`TrainCropDataset`.

    Returns
    -------
    wave : Tensor (N,) float32
    label : int
    """
    if speed_perturb is None:
        wave = repeat_pad(read(crop_samples), crop_samples)
    else:
        # Crop what becomes crop_samples after the speed change, then fix the length.
        k = speed_perturb.choose()
        need = math.ceil(crop_samples * speed_perturb.speeds[k]) + 1
        wave = speed_perturb.apply(repeat_pad(read(need), need), k)
        wave = repeat_pad(wave, crop_samples)
        label += k * num_speakers
    if augment is not None:
        wave = augment(wave)
    return wave.float().contiguous(), label


class _WorkerRandom:
    """A numpy generator per process, reseeded when the dataset lands in a new worker."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._owner: tuple | None = None
        self.rng = np.random.default_rng(self.seed)

    def get(self, *reseed: object) -> np.random.Generator:
        info = get_worker_info()
        worker_seed = torch.initial_seed() if info is None else info.seed
        owner = (os.getpid(), worker_seed)
        if owner != self._owner:
            self._owner = owner
            sequence = np.random.SeedSequence([self.seed, worker_seed % (1 << 63)])
            self.rng = np.random.default_rng(sequence)
            for module in reseed:  # augmentation copies in each worker must not draw alike
                if module is not None and hasattr(module, "reseed"):
                    module.reseed(int(self.rng.integers(1 << 62)))
        return self.rng


class SpeakerClasses:
    """The class counts a training set exposes: ``speakers`` (a sorted list) and
    ``speed_perturb`` (``SpeedPerturb`` or None) are set by the dataset."""

    speakers: list[str]
    speed_perturb: object | None

    @property
    def num_speakers(self) -> int:
        """Number of distinct training speakers."""
        return len(self.speakers)

    @property
    def num_classes(self) -> int:
        """Classifier outputs: speakers times speeds when speed perturbation is on."""
        speeds = len(self.speed_perturb.speeds) if self.speed_perturb is not None else 1
        return self.num_speakers * speeds


class TrainCropDataset(SpeakerClasses, Dataset):
    """Random fixed-length crops of training utterances with their speaker index.

    Parameters
    ----------
    wav_scp, utt2spk : path or mapping
        Kaldi data files (or ``{utt: path}`` / ``{utt: speaker}`` dicts). Every utterance in
        ``wav_scp`` needs a speaker; extra ``utt2spk`` entries are ignored.
    crop_seconds : float
        Crop length; shorter files are tiled (repetition padding) to this length.
    sample_rate : int
        Rate the waveforms are loaded (and resampled) at.
    augment : callable, optional
        ``wave (N,) -> wave (N,)`` applied to every crop in the worker (e.g.
        :class:`r2n_audio.features.augment.AugmentChain` of noise and reverberation).
    speed_perturb : SpeedPerturb, optional
        :class:`r2n_audio.features.augment.SpeedPerturb`; the speed becomes part of the label:
        ``speaker index + k * num_speakers`` for speed index ``k`` (WeSpeaker, 3D-Speaker), so
        the classifier needs :attr:`num_classes` outputs.
    seed : int
        Combined with the DataLoader's worker seed for crops and augmentation choices.
    durations : path or mapping, optional
        ``utt2dur`` (or ``{utt: seconds}``): crop offsets are drawn from it instead of each
        file's header. A file shorter than its entry raises a
        :class:`~r2n_audio.errors.DataFormatError` naming the ``utt2dur`` line.

    Items are ``(waveform (N,) float32, label int)`` with ``N = round(crop_seconds *
    sample_rate)``.
    """

    def __init__(self, wav_scp: str | os.PathLike | Mapping[str, str],
                 utt2spk: str | os.PathLike | Mapping[str, str], crop_seconds: float = 2.0,
                 sample_rate: int = 16000, augment: Callable[[Tensor], Tensor] | None = None,
                 speed_perturb: Callable | None = None, seed: int = 0,
                 durations: str | os.PathLike | Mapping[str, float] | None = None) -> None:
        wavs = _table(wav_scp, read_wav_scp)
        speakers_of = _table(utt2spk, read_utt2spk)
        # Set operations and map() over dict methods run in C: a VoxCeleb2-size manifest
        # (1,092,009 utterances) is indexed in seconds.
        missing = sorted(wavs.keys() - speakers_of.keys())
        if missing:
            raise DataFormatError(utt2spk if not isinstance(utt2spk, Mapping) else "utt2spk",
                                  f"{len(missing)} utterances of wav.scp have no speaker, e.g. "
                                  f"{missing[:3]}; fix the data dir (utt2spk must cover wav.scp)")
        if not wavs:
            raise DataFormatError(wav_scp if not isinstance(wav_scp, Mapping) else "wav.scp",
                                  "no utterances")
        if crop_seconds <= 0:
            raise R2NError(f"crop_seconds must be positive, got {crop_seconds}")
        self.keys = sorted(wavs)
        self.paths = list(map(wavs.__getitem__, self.keys))
        speaker_of_item = list(map(speakers_of.__getitem__, self.keys))
        self.speakers: list[str] = sorted(set(speaker_of_item))
        index = {s: i for i, s in enumerate(self.speakers)}
        # numpy, not lists of Python numbers: a VoxCeleb2-size manifest stays small.
        self.labels = np.fromiter(map(index.__getitem__, speaker_of_item), np.int32,
                                  len(self.keys))
        del speakers_of, wavs, speaker_of_item
        self.sample_rate = int(sample_rate)
        self.crop_samples = int(round(crop_seconds * sample_rate))
        self.augment, self.speed_perturb = augment, speed_perturb
        self._random = _WorkerRandom(seed)
        # Seconds per item: from utt2dur, else each file's header on first use (per worker).
        self._seconds = np.full(len(self.keys), np.nan)
        self._utt2dur = None if durations is None or isinstance(durations, Mapping) \
            else durations
        if durations is not None:
            table = _table(durations, read_utt2dur)
            missing = sorted(set(self.keys) - table.keys())
            if missing:
                raise DataFormatError(self._utt2dur or "utt2dur",
                                      f"{len(missing)} utterances of wav.scp have no duration, "
                                      f"e.g. {missing[:3]}")
            self._seconds = np.fromiter(map(table.__getitem__, self.keys), float,
                                        len(self.keys))

    def __len__(self) -> int:
        return len(self.keys)

    def _crop(self, i: int, length: int, rng: np.random.Generator) -> Tensor:
        """A random ``length``-sample stretch of utterance ``i``; a shorter file is tiled.

        Only the stretch is decoded (the header gives the duration, once per file and
        worker): a 2 s crop of a long recording costs what 2 s cost.
        """
        path = self.paths[i]
        if np.isnan(self._seconds[i]):
            self._seconds[i] = audio_duration(path)
        try:
            wave = load_random_segment(path, length, self.sample_rate, rng,
                                       float(self._seconds[i]))
        except AudioError as err:
            if self._utt2dur is None or "outside the file" not in err.problem:
                raise
            key = self.keys[i]
            raise DataFormatError(self._utt2dur, f"{key} is {float(self._seconds[i])} s here "
                                  f"but {err}; rewrite utt2dur from the audio",
                                  utt2dur_line(self._utt2dur, key)) from None
        return repeat_pad(wave, length)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        rng = self._random.get(self.augment, self.speed_perturb)
        return augmented_crop(lambda n: self._crop(i, n, rng), int(self.labels[i]),
                              self.crop_samples,
                              self.num_speakers, self.augment, self.speed_perturb)


def collate_train(batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """Stack ``TrainCropDataset`` items into ``(waveforms (B, N), labels (B,) int64)``."""
    waves, labels = zip(*batch)
    return torch.stack(waves), torch.tensor(labels, dtype=torch.long)


class EvalDataset(Dataset):
    """Whole utterances for embedding: items are ``(key, waveform (N,))``.

    Parameters
    ----------
    wav_scp : path or mapping
        ``wav.scp`` (or ``{key: path}``); items come in sorted key order.
    sample_rate : int
        Load (and resample) rate.
    min_seconds : float
        Shorter files are errors (:class:`~r2n_audio.errors.AudioError`).
    errors : {"raise", "return"}
        With ``"return"`` an unreadable file yields ``(key, AudioError)`` instead of raising, so
        one bad file does not stop a run; :func:`collate_eval` moves those into ``failed``.
    utt2dur : path or mapping, optional
        Durations for :meth:`durations` (no header reads); keys it lacks read their header.
    """

    def __init__(self, wav_scp: str | os.PathLike | Mapping[str, str], sample_rate: int = 16000,
                 min_seconds: float = 0.1, errors: str = "raise",
                 utt2dur: str | os.PathLike | Mapping[str, float] | None = None) -> None:
        if errors not in ("raise", "return"):
            raise R2NError(f"errors must be 'raise' or 'return', got {errors!r}")
        table = _table(wav_scp, read_wav_scp)
        self.keys = sorted(table)
        self.paths = [table[k] for k in self.keys]
        self.sample_rate, self.min_seconds, self.errors = int(sample_rate), min_seconds, errors
        self._utt2dur = {} if utt2dur is None else _table(utt2dur, read_utt2dur)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[str, Tensor | AudioError]:
        try:
            return self.keys[i], load_audio(self.paths[i], self.sample_rate, self.min_seconds)
        except AudioError as err:
            if self.errors == "raise":
                raise
            return self.keys[i], err

    def durations(self) -> list[float]:
        """Seconds per item from ``utt2dur`` or else the file headers (0.0 for unreadable
        files), for bucketing."""
        result = []
        for key, path in zip(self.keys, self.paths):
            if key in self._utt2dur:
                result.append(self._utt2dur[key])
                continue
            try:
                result.append(audio_duration(path))
            except AudioError:
                result.append(0.0)  # fails again, with its message, when the item is loaded
        return result


class EvalBatch(NamedTuple):
    """A padded evaluation batch; ``failed`` maps keys that could not be read to the reason."""

    keys: list[str]
    waveforms: Tensor
    lengths: Tensor
    failed: dict[str, str]


def collate_eval(batch: Sequence[tuple[str, Tensor | Exception]]) -> EvalBatch:
    """Zero-pad ``EvalDataset`` items into ``EvalBatch(keys, waveforms (B, N), lengths (B,),
    failed)``; items that carry an error go to ``failed`` instead (B may then be 0)."""
    good = [(k, w) for k, w in batch if isinstance(w, Tensor)]
    failed = {k: str(w) for k, w in batch if not isinstance(w, Tensor)}
    lengths = torch.tensor([w.numel() for _, w in good], dtype=torch.long)
    waves = torch.zeros(len(good), int(lengths.max()) if good else 0)
    for row, (_, wave) in enumerate(good):
        waves[row, :wave.numel()] = wave
    return EvalBatch([k for k, _ in good], waves, lengths, failed)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length utterances, bounded by padded seconds per batch.

    Items are sorted by duration (longest first, so memory problems show at once) and packed
    greedily while ``len(batch) * longest_in_batch <= max_seconds`` (the padded cost the model
    pays) and ``len(batch) <= max_batch_size``; an item longer than ``max_seconds`` gets a batch
    of its own. Every index appears exactly once.

    Parameters
    ----------
    durations : sequence of float
        Seconds per dataset item (e.g. :meth:`EvalDataset.durations`).
    max_seconds : float
        Bound on padded audio per batch.
    max_batch_size : int, optional
        Also cap the number of items per batch.
    """

    def __init__(self, durations: Sequence[float], max_seconds: float = 300.0,
                 max_batch_size: int | None = None) -> None:
        if max_seconds <= 0:
            raise R2NError(f"max_seconds must be positive, got {max_seconds}")
        order = sorted(range(len(durations)), key=lambda i: (-durations[i], i))
        self.batches = list(duration_batches(order, durations, max_seconds, max_batch_size))

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(b) for b in self.batches])
