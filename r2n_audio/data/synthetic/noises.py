"""Synthetic stand-ins for MUSAN and the RIR corpus, so recipes augment with no download.

:func:`make_augmentation_sets` writes, next to the speaker corpus::

    musan/noise/nNNNN.wav    coloured, babble-shaped and mains-hum noise (see channel.py)
    musan/music/mNNNN.wav    random tonal music: harmonic notes on a scale, chords, drums
    musan/speech/sNNNN.wav   single speakers who are in neither the train nor the test set
    rirs/rNNNN.wav           synthetic room impulse responses (direct path first)

in the folder layouts that :class:`~r2n_audio.features.augment.AddNoise` and
:class:`~r2n_audio.features.augment.Reverberate` read, so a recipe points ``musan_dir`` and
``rir_dir`` at them exactly as it would at the real corpora. Every file is drawn from a
generator seeded by ``(seed, kind, index)``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from r2n_audio.atomic import atomic_path
from r2n_audio.data.synthetic.channel import (background_noise, channel_gain, record,
                                               room_impulse_response)
from r2n_audio.data.synthetic.synth import SAMPLE_RATE, speak
from r2n_audio.data.synthetic.voice import sample_speaker

__all__ = ["AUGMENT_KINDS", "augmentation_jobs", "make_augmentation_sets", "synthetic_music",
           "write_augmentation_file"]

#: Sub-folder, file prefix and default count of each kind.
AUGMENT_KINDS = {"noise": ("musan/noise", "n", 40), "music": ("musan/music", "m", 40),
                 "speech": ("musan/speech", "s", 40), "rir": ("rirs", "r", 200)}
_SECONDS = (6.0, 10.0)  # noise, music and speech file lengths


def _note(rng: np.random.Generator, freq: float, n: int) -> np.ndarray:
    """One instrument note (n,): a few harmonics with a plucked or bowed envelope."""
    t = np.arange(n) / SAMPLE_RATE
    harmonics = np.arange(1, rng.integers(2, 9))
    amps = harmonics ** -rng.uniform(0.8, 2.0)
    tone = (amps[:, None] * np.sin(2 * np.pi * freq * harmonics[:, None] * t
                                   + rng.uniform(0, 6.3, (len(harmonics), 1)))).sum(0)
    if rng.random() < 0.5:  # plucked: fast attack, exponential decay
        env = np.exp(-t / rng.uniform(0.1, 0.6))
    else:  # bowed / sustained, with a little tremolo
        env = np.minimum(1.0, t / 0.05) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    return tone * env


def synthetic_music(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS random music (N,): notes and chords from one scale at one tempo, plus drums."""
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12]) if rng.random() < 0.5 \
        else np.array([0, 2, 3, 5, 7, 8, 10, 12])
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    beat = int(SAMPLE_RATE * 60 / rng.uniform(70, 160))
    out = np.zeros(n + 4 * beat)
    for start in range(0, n, beat):
        for _ in range(rng.integers(1, 4)):  # a melody note or a chord
            octave = 2 ** rng.integers(0, 3)
            freq = root * octave * 2 ** (rng.choice(scale) / 12)
            length = beat * int(rng.integers(1, 5))
            out[start:start + length] += _note(rng, freq, length) * rng.uniform(0.3, 1.0)
        if rng.random() < 0.6:  # drum: a decaying noise burst, low (kick) or bright (hat)
            decay = np.exp(-np.arange(beat // 2) / (0.02 * SAMPLE_RATE))
            hit = rng.standard_normal(beat // 2) * decay
            if rng.random() < 0.5:
                hit = np.convolve(hit, np.ones(16) / 16, mode="same")
            out[start:start + beat // 2] += hit * rng.uniform(0.5, 2.0)
    out = out[:n]
    return out / (out.std() + 1e-12)


def _signal(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "rir":
        rir = room_impulse_response(rng)
        return rir / np.abs(rir).max()
    n = int(rng.uniform(*_SECONDS) * SAMPLE_RATE)
    if kind == "noise":
        wave = background_noise(rng, n)
    elif kind == "music":
        wave = synthetic_music(rng, n)
    else:  # one voice per file, drawn here: no train or test speaker talks in the babble
        return record(speak(sample_speaker(rng), rng, n, channel_gain=channel_gain(rng)), rng)
    return 0.5 * wave / (np.abs(wave).max() + 1e-12)  # AddNoise sets the level: any will do


def write_augmentation_file(job: tuple[Path, str, int, int]) -> float:
    """Write one file of :func:`augmentation_jobs`; returns 0.0 (it is not corpus audio)."""
    path, kind, seed, index = job
    rng = np.random.default_rng([seed, 100 + list(AUGMENT_KINDS).index(kind), index])
    buffer = io.BytesIO()
    sf.write(buffer, _signal(kind, rng).astype(np.float32), SAMPLE_RATE,
             subtype="PCM_16", format="WAV")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return 0.0


def augmentation_jobs(out_dir: str | Path, seed: int = 0,
                      counts: dict[str, int] | None = None) -> list[tuple[Path, str, int, int]]:
    """(path, kind, seed, index) of every file :func:`make_augmentation_sets` writes."""
    counts = {k: default for k, (_, _, default) in AUGMENT_KINDS.items()} | dict(counts or {})
    return [(Path(out_dir) / AUGMENT_KINDS[kind][0] / f"{AUGMENT_KINDS[kind][1]}{i + 1:04d}.wav",
             kind, seed, i) for kind, count in counts.items() for i in range(count)]


def make_augmentation_sets(out_dir: str | Path, seed: int = 0,
                           counts: dict[str, int] | None = None) -> None:
    """Write the synthetic MUSAN-style and RIR folders under ``out_dir`` (in this process).

    Parameters
    ----------
    out_dir : path
    seed : int
        Same seed, same files.
    counts : dict, optional
        Files per kind (``noise``, ``music``, ``speech``, ``rir``); defaults in
        :data:`AUGMENT_KINDS`.
    """
    for job in augmentation_jobs(out_dir, seed, counts):
        write_augmentation_file(job)
