"""Training augmentation: MUSAN noise / music / babble, RIR reverberation, speed, SpecAugment.

Waveform modules (:class:`AddNoise`, :class:`Reverberate`, :class:`SpeedPerturb`) work on one
utterance ``wave (N,)`` inside DataLoader workers; :class:`SpecAugment` works on a feature batch
``(B, T, F)`` on the training device. Each applies with probability ``p`` and draws from its own
seeded generator; :meth:`reseed` gives a copy in each DataLoader worker its own stream
(:class:`r2n_audio.data.datasets.TrainCropDataset` does this).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from r2n_audio.audio import AUDIO_EXTENSIONS, audio_duration, load_audio, load_random_segment
from r2n_audio.errors import R2NError

__all__ = ["AddNoise", "Reverberate", "SpeedPerturb", "SpecAugment", "AugmentChain", "OneOf",
           "MUSAN_SNR", "NOISE_WEIGHTINGS", "audio_files"]

# Per-category SNR ranges in dB of WeSpeaker's VoxCeleb recipe (``add_reverb_noise`` in its
# dataset/processor.py): one MUSAN file at a time, speech (babble) at 10-30 dB. Kaldi's recipe
# instead sums 3-7 speech files at 13-20 dB; 3D-Speaker uses 0-15 dB for every category.
MUSAN_SNR = {"noise": (0.0, 15.0), "music": (5.0, 15.0), "speech": (10.0, 30.0)}
NOISE_WEIGHTINGS = ("files", "categories")


def _preload(files: list[str], sample_rate: int) -> list[np.ndarray]:
    """Decode every file once into int16 clips (half the memory of float32; DataLoader
    workers forked afterwards share the pages instead of copying them)."""
    # x 32768 (not 32767): a PCM-16 file comes back sample for sample.
    return [np.clip(np.round(load_audio(f, sample_rate, min_seconds=0.0).numpy() * 32768.0),
                    -32768, 32767).astype(np.int16) for f in files]


def _as_float(clip: np.ndarray) -> Tensor:
    return torch.from_numpy(clip.astype(np.float32) * np.float32(1.0 / 32768.0))


def shard_clips(shard_list: str | os.PathLike, sample_rate: int) -> dict[str, list[np.ndarray]]:
    """Every utterance of a shard list (``r2n-audio prepare shards``) as int16 clips, grouped
    by their speaker field (for MUSAN: the category) and sorted by key within a group, so a
    noise or RIR set can come from shards instead of a folder."""
    import io

    import soundfile as sf

    from r2n_audio.data.shards import iter_shard, read_shard_list

    shards = read_shard_list(shard_list)
    if shards.sample_rate != sample_rate:
        raise R2NError(f"{shard_list}: shards at {shards.sample_rate} Hz, augmenting at "
                       f"{sample_rate} Hz")
    found: dict[str, list[tuple[str, np.ndarray]]] = {}
    for path in shards.paths:
        for key, group, _, _, data in iter_shard(path):
            found.setdefault(group, []).append((key, sf.read(io.BytesIO(data), dtype="int16")[0]))
    return {group: [clip for _, clip in sorted(items, key=lambda kc: kc[0])]
            for group, items in found.items()}


def audio_files(folder: str | os.PathLike, what: str) -> list[str]:
    """Sorted audio files under ``folder`` (recursive); a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise R2NError(f"{folder}: {what} folder not found")
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise R2NError(f"{folder}: {what} folder has no audio files "
                       f"({', '.join(AUDIO_EXTENSIONS)})")
    return files


class _Random(nn.Module):
    """Probability and a seeded numpy generator shared by the augmentation modules."""

    def __init__(self, p: float, seed: int | None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise R2NError(f"augmentation probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)
        self._durations: dict[str, float] = {}  # header reads, once per file

    def reseed(self, seed: int | None) -> None:
        """Restart the generator (``None``: fresh OS entropy)."""
        self.rng = np.random.default_rng(seed)

    def _fires(self) -> bool:
        return self.p > 0.0 and self.rng.random() < self.p

    def _segment(self, source: str | np.ndarray, length: int, sample_rate: int) -> Tensor:
        """A random ``length``-sample stretch of a file (or preloaded clip), tiled when it is
        shorter.

        Only the stretch is decoded: MUSAN music files run for minutes, a crop for seconds.
        """
        if isinstance(source, np.ndarray):
            # The offset drawn as load_random_segment draws it: the same crop as from the file.
            start = round(float(self.rng.uniform(
                0.0, len(source) / sample_rate - length / sample_rate)) * sample_rate) \
                if len(source) > length else 0
            wave = _as_float(source[start:start + length])
        else:
            if source not in self._durations:
                self._durations[source] = audio_duration(source)
            wave = load_random_segment(source, length, sample_rate, self.rng,
                                       self._durations[source])
        if wave.numel() < length:  # tile from a random phase
            wave = wave.repeat(math.ceil(length / wave.numel()) + 1)
            start = int(self.rng.integers(0, wave.numel() - length + 1))
            wave = wave[start:start + length]
        return wave


class AddNoise(_Random):
    """Additive noise, music or babble from a folder in MUSAN layout, at a random SNR.

    Parameters
    ----------
    musan_dir : path
        Folder with ``noise/``, ``music/`` and/or ``speech/`` subfolders of audio files.
    categories : mapping of str to (float, float), optional
        Category -> SNR range in dB (default :data:`MUSAN_SNR`, WeSpeaker's). Every named
        category must exist and hold audio.
    p : float
        Probability of adding noise to a call's waveform.
    sample_rate : int
        Rate the noise files are loaded at (the waveforms' rate).
    seed : int, optional
        Generator seed.
    babble_speakers : (int, int)
        How many ``speech`` files are summed into one babble, drawn uniformly in this range
        (inclusive). ``(1, 1)``, one file, is WeSpeaker's and 3D-Speaker's; Kaldi uses ``(3, 7)``.
    weighting : str
        How a category is chosen: ``"files"`` (in proportion to its number of files, i.e. one
        file drawn uniformly from the whole of MUSAN, as WeSpeaker and 3D-Speaker do; MUSAN's
        930 noise / 660 music / 426 speech files give 46 / 33 / 21 %) or ``"categories"``
        (each category equally likely).
    preload : bool
        Decode every file once into memory (int16) instead of reading a stretch per call:
        no file opens in the workers. Right for noise and RIR sets (MUSAN noise is 6 h,
        0.7 GB); all of MUSAN (109 h) takes 12.6 GB. A shard list given as ``musan_dir``
        (speaker = category) is always loaded into memory.

    The SNR is exact on the output: ``10 log10(P(wave) / P(added))`` over the whole waveform
    equals the drawn value (no clipping is applied, so nothing moves it).
    """

    def __init__(self, musan_dir: str | os.PathLike,
                 categories: dict[str, tuple[float, float]] | None = None, p: float = 1.0,
                 sample_rate: int = 16000, seed: int | None = None,
                 babble_speakers: tuple[int, int] = (1, 1), weighting: str = "files",
                 preload: bool = False) -> None:
        super().__init__(p, seed)
        categories = dict(MUSAN_SNR if categories is None else categories)
        if weighting not in NOISE_WEIGHTINGS:
            raise R2NError(f"noise weighting must be one of {NOISE_WEIGHTINGS}, got {weighting!r}")
        low, high = (int(n) for n in babble_speakers)
        if not 1 <= low <= high:
            raise R2NError(f"babble_speakers must be (low, high) with 1 <= low <= high, "
                           f"got {tuple(babble_speakers)}")
        if not Path(musan_dir).exists():
            raise R2NError(f"{musan_dir}: MUSAN folder not found (expected noise/, music/, "
                           f"speech/ inside, or a shard list whose speakers are the categories)")
        clips = shard_clips(musan_dir, sample_rate) if Path(musan_dir).is_file() else None
        self.files, problems = {}, []
        for category in categories:  # report every unusable category at once
            try:
                self.files[category] = clips[category] if clips is not None else \
                    audio_files(Path(musan_dir) / category, f"MUSAN {category}")
            except R2NError as err:
                problems.append(str(err))
            except KeyError:
                problems.append(f"{musan_dir}: no utterance has {category!r} as its speaker")
        if problems:
            raise R2NError("; ".join(problems) + " (pass categories= to use a subset)")
        self.snr = {c: (float(lo), float(hi)) for c, (lo, hi) in categories.items()}
        self.sample_rate = int(sample_rate)
        self.babble_speakers = (low, high)
        sizes = np.array([len(f) for f in self.files.values()], dtype=float)
        weights = sizes if weighting == "files" else np.ones_like(sizes)
        self.probabilities = dict(zip(self.files, weights / weights.sum()))
        if preload and clips is None:
            self.files = {c: _preload(f, self.sample_rate) for c, f in self.files.items()}

    def _noise(self, category: str, length: int) -> Tensor:
        files = self.files[category]
        count = int(self.rng.integers(self.babble_speakers[0], self.babble_speakers[1] + 1)) \
            if category == "speech" else 1
        picks = self.rng.choice(len(files), size=count, replace=count > len(files))
        return sum(self._segment(files[i], length, self.sample_rate) for i in picks)

    def add(self, wave: Tensor, noise: Tensor, snr_db: float) -> Tensor:
        """``wave + noise`` with the noise scaled to ``snr_db`` dB below the wave's power."""
        p_wave = wave.double().pow(2).mean()
        p_noise = noise.double().pow(2).mean().clamp(min=1e-20)
        scale = torch.sqrt(p_wave / (p_noise * 10.0 ** (snr_db / 10.0)))
        return wave + (scale * noise).to(wave.dtype)

    def forward(self, wave: Tensor) -> Tensor:
        """Return ``wave (N,)`` with noise added (with probability ``p``)."""
        if not self._fires():
            return wave
        names = list(self.probabilities)
        category = names[int(self.rng.choice(len(names), p=list(self.probabilities.values())))]
        snr = float(self.rng.uniform(*self.snr[category]))
        return self.add(wave, self._noise(category, wave.numel()), snr)


class Reverberate(_Random):
    """Convolution with a random room impulse response from a folder of RIR audio files.

    The RIR is normalised to unit energy and the output is aligned to its direct path (the
    RIR's largest peak), so the reverberant utterance keeps the clean one's timing and length.

    Parameters
    ----------
    rir_dir : path
        Folder searched recursively for RIR audio (e.g. ``RIRS_NOISES/simulated_rirs``), or a
        shard list of RIRs (loaded into memory).
    p, sample_rate, seed, preload
        As in :class:`AddNoise`.
    """

    def __init__(self, rir_dir: str | os.PathLike, p: float = 1.0, sample_rate: int = 16000,
                 seed: int | None = None, preload: bool = False) -> None:
        super().__init__(p, seed)
        shards = Path(rir_dir).is_file()  # a shard list: every utterance is an RIR
        self.files = [c for group in shard_clips(rir_dir, sample_rate).values() for c in group] \
            if shards else audio_files(rir_dir, "RIR")
        self.sample_rate = int(sample_rate)
        if preload and not shards:
            self.files = _preload(self.files, self.sample_rate)

    @staticmethod
    def convolve(wave: Tensor, rir: Tensor) -> Tensor:
        """``wave (N,)`` through ``rir (K,)`` (unit energy, direct path aligned), FFT-based.

        scipy's FFT at a 5-smooth length, in float32: on one CPU thread (a loader worker)
        about 3x ``torch.fft`` at the next power of two, and this is a worker's largest cost.
        """
        import scipy.fft  # lazy: only with reverberation

        rir = rir / rir.pow(2).sum().sqrt().clamp(min=1e-12)
        direct = int(rir.abs().argmax())
        n = wave.numel() + rir.numel() - 1
        size = scipy.fft.next_fast_len(n, real=True)
        x = wave.detach().cpu().float().numpy()
        h = rir.detach().cpu().float().numpy()
        full = scipy.fft.irfft(scipy.fft.rfft(x, size) * scipy.fft.rfft(h, size), size)
        return torch.from_numpy(full[direct:direct + wave.numel()]).to(wave.dtype)

    def forward(self, wave: Tensor) -> Tensor:
        """Return ``wave (N,)`` reverberated (with probability ``p``)."""
        if not self._fires():
            return wave
        rir = self.files[int(self.rng.integers(len(self.files)))]
        if isinstance(rir, np.ndarray):
            return self.convolve(wave, _as_float(rir))
        return self.convolve(wave, load_audio(rir, self.sample_rate, min_seconds=0.0))


class SpeedPerturb(_Random):
    """Speed perturbation by resampling; the speed index becomes part of the speaker label.

    Parameters
    ----------
    speeds : sequence of float
        ``speeds[0]`` must be 1.0 (unchanged); default ``(1.0, 0.9, 1.1)``.
    p : float
        Probability of a change; the changed speed is drawn uniformly from ``speeds[1:]``. The
        default 2/3 makes all three speeds equally likely, as in WeSpeaker and 3D-Speaker, who
        train speed ``k`` of speaker ``s`` as class ``s + k * num_speakers``.
    sample_rate : int
        The waveforms' rate.
    seed : int, optional
        Generator seed.
    """

    def __init__(self, speeds: Sequence[float] = (1.0, 0.9, 1.1), p: float = 2.0 / 3.0,
                 sample_rate: int = 16000, seed: int | None = None) -> None:
        super().__init__(p, seed)
        if not speeds or speeds[0] != 1.0 or any(s <= 0 for s in speeds):
            raise R2NError(f"speeds must start with 1.0 and be positive, got {list(speeds)}")
        self.speeds = tuple(float(s) for s in speeds)
        self.sample_rate = int(sample_rate)
        self._resamplers: dict[int, nn.Module] = {}  # plain dict: not part of state_dict

    def choose(self) -> int:
        """Draw a speed index (0 = unchanged)."""
        if len(self.speeds) == 1 or not self._fires():
            return 0
        return 1 + int(self.rng.integers(len(self.speeds) - 1))

    def apply(self, wave: Tensor, index: int) -> Tensor:
        """Play ``wave (N,)`` at ``speeds[index]``: about ``N / speed`` samples, pitch shifted
        (sox ``speed``: read as if recorded at ``rate * speed``, resampled to ``rate``)."""
        if index == 0:
            return wave
        if index not in self._resamplers:  # the sinc kernel is built once per speed
            from torchaudio.transforms import Resample  # lazy: only with speed perturbation

            source = int(round(self.sample_rate * self.speeds[index]))
            self._resamplers[index] = Resample(source, self.sample_rate)
        return self._resamplers[index](wave)

    def forward(self, wave: Tensor) -> tuple[Tensor, int]:
        """Return ``(perturbed wave, speed index)``."""
        index = self.choose()
        return self.apply(wave, index), index


class SpecAugment(_Random):
    """Time and frequency masking of feature batches (Park et al., 2019), lengths-aware.

    Each utterance is masked with probability ``p``: ``num_time_masks`` spans of up to
    ``max_time_width`` frames inside its valid frames and ``num_freq_masks`` bands of up to
    ``max_freq_width`` bins, set to ``value`` (0: the mean after CMN). Defaults are
    WeSpeaker's (one mask each, 10 frames, 8 bins, p 0.6).
    """

    def __init__(self, num_time_masks: int = 1, max_time_width: int = 10,
                 num_freq_masks: int = 1, max_freq_width: int = 8, p: float = 0.6,
                 value: float = 0.0, seed: int | None = None) -> None:
        super().__init__(p, seed)
        self.num_time_masks, self.max_time_width = int(num_time_masks), int(max_time_width)
        self.num_freq_masks, self.max_freq_width = int(num_freq_masks), int(max_freq_width)
        self.value = float(value)

    def _spans(self, sizes: np.ndarray, count: int, max_width: int) -> np.ndarray:
        """(B, count, 2) [start, stop) spans within each of ``sizes`` (B,)."""
        widths = self.rng.integers(0, max_width + 1, size=(len(sizes), count))
        widths = np.minimum(widths, sizes[:, None])
        starts = (self.rng.random((len(sizes), count)) * (sizes[:, None] - widths + 1)).astype(int)
        return np.stack([starts, starts + widths], axis=-1)

    def forward(self, feats: Tensor, frame_lengths: Tensor | None = None) -> Tensor:
        """Return masked ``feats (B, T, F)``; padded frames are never touched."""
        batch, frames, bins = feats.shape
        if frame_lengths is None:
            frame_lengths = torch.full((batch,), frames)
        lengths = frame_lengths.detach().cpu().numpy().astype(int)
        chosen = self.rng.random(batch) < self.p
        t_spans = self._spans(lengths, self.num_time_masks, self.max_time_width)
        f_spans = self._spans(np.full(batch, bins), self.num_freq_masks, self.max_freq_width)
        spans = [torch.from_numpy(s).to(feats.device) for s in (t_spans, f_spans)]
        t = torch.arange(frames, device=feats.device)[None, None, :]
        f = torch.arange(bins, device=feats.device)[None, None, :]
        t_mask = ((t >= spans[0][..., :1]) & (t < spans[0][..., 1:])).any(1)  # (B, T)
        f_mask = ((f >= spans[1][..., :1]) & (f < spans[1][..., 1:])).any(1)  # (B, F)
        mask = (t_mask[:, :, None] | f_mask[:, None, :])
        mask &= torch.from_numpy(chosen).to(feats.device)[:, None, None]
        mask &= (t[0, 0] < frame_lengths.to(feats.device)[:, None])[:, :, None]
        return feats.masked_fill(mask, self.value)


class AugmentChain(nn.Module):
    """Apply waveform augmentations in order; :meth:`reseed` reseeds each from one seed."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.steps = nn.ModuleList(modules)

    def reseed(self, seed: int | None) -> None:
        """Give every step its own stream derived from ``seed``."""
        children = np.random.SeedSequence(seed).spawn(len(self.steps))
        for step, child in zip(self.steps, children):
            if hasattr(step, "reseed"):
                step.reseed(int(child.generate_state(1, np.uint64)[0]))

    def forward(self, wave: Tensor) -> Tensor:
        for step in self.steps:
            wave = step(wave)
        return wave


class OneOf(_Random):
    """With probability ``p``, apply one of ``modules`` chosen uniformly (WeSpeaker applies
    either reverberation or noise to 60% of the crops); set the members' own ``p`` to 1."""

    def __init__(self, *modules: nn.Module, p: float = 0.6, seed: int | None = None) -> None:
        super().__init__(p, seed)
        self.choices = nn.ModuleList(modules)

    def reseed(self, seed: int | None) -> None:
        """Reseed this module and every choice from ``seed``."""
        sequence = np.random.SeedSequence(seed)
        own, *children = sequence.spawn(1 + len(self.choices))
        self.rng = np.random.default_rng(own)
        for module, child in zip(self.choices, children):
            if hasattr(module, "reseed"):
                module.reseed(int(child.generate_state(1, np.uint64)[0]))

    def forward(self, wave: Tensor) -> Tensor:
        if not self._fires():
            return wave
        return self.choices[int(self.rng.integers(len(self.choices)))](wave)
