"""Per-utterance recording conditions: microphone/channel EQ, room, background noise, level.

Each utterance gets its own channel so that the long-term spectrum of a recording says as much
about the session as about the speaker, as in real collections (VoxCeleb's interviews): a
random EQ (tilt, resonant peaks and dips, high-pass, sometimes telephone-like band-limiting), a
synthetic room impulse response (direct path, sparse early reflections, a two-band
exponentially decaying diffuse tail; Schroeder's RT60 definition), additive noise of a random
kind and colour at a random SNR, and a random recording level.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve, lfilter

from r2n_audio.data.synthetic.synth import FREQS, SAMPLE_RATE

__all__ = ["channel_gain", "room_impulse_response", "background_noise", "record"]

_F = np.maximum(FREQS, 1.0)
P_REVERB = 0.5
P_NOISE = 0.8
SNR_DB = (10.0, 35.0)
RT60 = (0.1, 0.7)
HISS_DB = (40.0, 65.0)
DRR_DB = (0.0, 15.0)


def channel_gain(rng: np.random.Generator) -> np.ndarray:
    """Random static magnitude response, shape (K,) on the synthesis FFT grid."""
    octaves = np.log2(_F / 1000.0)
    db = rng.uniform(-3.0, 2.0) * octaves  # tilt, dB per octave around 1 kHz
    for _ in range(rng.integers(1, 5)):  # resonances and dips of mics, rooms, codecs
        centre = rng.uniform(np.log2(150 / 1000), np.log2(7000 / 1000))
        width = rng.uniform(0.2, 1.0)
        db += rng.uniform(-8.0, 8.0) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    gain = 10.0 ** (db / 20.0)
    highpass = rng.uniform(40.0, 300.0)
    gain /= np.sqrt(1.0 + (highpass / _F) ** 4)  # 2nd-order Butterworth magnitude
    lowpass = rng.uniform(3300.0, 3800.0) if rng.random() < 0.15 else rng.uniform(5000.0, 9000.0)
    gain /= np.sqrt(1.0 + (FREQS / lowpass) ** 16)
    return gain


def room_impulse_response(rng: np.random.Generator) -> np.ndarray:
    """A synthetic RIR (L,): direct path, early reflections, diffuse exponential tail."""
    rt60 = rng.uniform(*RT60)
    n = int(min(rt60, 0.6) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = np.zeros(n)
    rir[0] = 1.0
    delays = rng.integers(int(0.002 * SAMPLE_RATE), int(0.025 * SAMPLE_RATE), rng.integers(3, 9))
    rir[delays] += rng.uniform(-0.6, 0.6, len(delays))
    # High frequencies die out faster than low ones: split the tail into two bands.
    white = rng.standard_normal(n)
    low = np.convolve(white, np.ones(8) / 8.0, mode="same")
    tail = low * np.exp(-6.9 * t / rt60) + (white - low) * np.exp(-6.9 * t / (0.6 * rt60))
    onset = int(0.005 * SAMPLE_RATE)
    tail[:onset] *= np.linspace(0.0, 1.0, onset)
    drr_db = rng.uniform(*DRR_DB)  # direct-to-reverberant energy ratio
    direct = np.sum(rir ** 2)
    tail *= np.sqrt(direct / np.sum(tail ** 2) * 10.0 ** (-drr_db / 10.0))
    return rir + tail


def _resonance(freq: float, bw: float) -> list[float]:
    """Denominator of a two-pole resonator (Klatt 1980) at ``freq`` Hz, ``bw`` Hz wide."""
    r = np.exp(-np.pi * bw / SAMPLE_RATE)
    return [1.0, -2.0 * r * np.cos(2.0 * np.pi * freq / SAMPLE_RATE), r * r]


def background_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS noise (N,): coloured stationary, speech-shaped babble-like, or mains hum.

    Shaped with low-order recursive filters rather than an FFT of the whole signal (a few
    operations per sample, whatever N factors into).
    """
    kind = rng.choice(["coloured", "babble", "hum"], p=[0.6, 0.3, 0.1])
    white = rng.standard_normal(n)
    if kind == "coloured":  # a leaky integrator: near white (0.3) to nearly brown (0.98)
        noise = lfilter([1.0], [1.0, -rng.uniform(0.3, 0.98)], white)
    else:  # long-term speech spectrum: a broad hump near 500 Hz, high-passed
        noise = lfilter([1.0, -0.95], _resonance(rng.uniform(350.0, 700.0), 900.0), white)
    if kind == "babble":  # syllable-rate amplitude modulation of a few voices
        t = np.arange(0, n + 160, 160) / SAMPLE_RATE
        mod = sum(1.0 + np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6.3))
                  for _ in range(3))
        noise *= np.interp(np.arange(n), np.arange(len(t)) * 160, mod)
    elif kind == "hum":  # mains and harmonics: 0.1 s holds whole periods of 50 and 60 Hz
        t = np.arange(SAMPLE_RATE // 10) / SAMPLE_RATE
        mains = rng.choice([50.0, 60.0])
        period = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * mains * h * t
                                                         + rng.uniform(0, 6.3))
                     for h in range(1, 8))
        hum = np.tile(period, n // len(period) + 1)[:n]
        noise = 0.3 * noise / noise.std() + hum / hum.std()
    return noise / (noise.std() + 1e-12)


def record(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put unit-level dry speech (N,) in a room with noise and set its level.

    Returns
    -------
    np.ndarray, shape (N,), float32
        Peak between -20 and -1 dBFS.
    """
    n = len(speech)
    if rng.random() < P_REVERB:
        speech = fftconvolve(speech, room_impulse_response(rng))[:n]
    if rng.random() < P_NOISE:
        # The dry speech has unit RMS over voiced frames: the SNR is relative to that level.
        snr_db = rng.uniform(*SNR_DB)
        speech = speech + background_noise(rng, n) * 10.0 ** (-snr_db / 20.0)
    # Every real recording has a noise floor (microphone self-noise, preamp hiss): digital
    # silence would be an artefact no real input has.
    hiss = rng.standard_normal(n) * 10.0 ** (-rng.uniform(*HISS_DB) / 20.0)
    speech = speech + np.convolve(hiss, [1.0, rng.uniform(-0.9, 0.9)], mode="same")
    peak = np.max(np.abs(speech)) + 1e-12
    return (speech * (10.0 ** (rng.uniform(-20.0, -1.0) / 20.0) / peak)).astype(np.float32)
