"""Source-filter synthesis of one utterance, vectorised with numpy.

Sources are made in the time domain: a glottal flow derivative (Rosenberg 1971 pulse shape with
the speaker's open and speed quotients, per-cycle jitter and shimmer, a one-pole return-phase
tilt), aspiration noise pulsed by the glottal flow (breathiness) or free-running (/h/,
aspirated stops), and frication noise. The vocal tract is applied frame by frame in a short-time
Fourier domain (32 ms windows, 8 ms hop, square-root Hann analysis and synthesis): the voiced
path is multiplied by the magnitude response of a cascade of Klatt (1980) formant resonators
(unity gain at DC; F1-F5 per frame, F6-F8 fixed per speaker) with the nasal pole-zero pair, the
piriform-fossa antiresonance and a higher-pole correction, the frication path by a noise-band
shape. Doing the time-varying filter this way costs a few array
operations per utterance instead of a Python loop per frame.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import irfft, rfft
from scipy.signal import lfilter

from r2n_audio.data.synthetic.phonetics import FrameTracks, utterance_tracks
from r2n_audio.data.synthetic.voice import SpeakerVoice

__all__ = ["SAMPLE_RATE", "N_FFT", "HOP", "FREQS", "speak"]

SAMPLE_RATE = 16000
N_FFT = 512
HOP = N_FFT // 4
FREQS = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
_W = 2.0 * np.pi * FREQS / SAMPLE_RATE
_COS_W, _SIN_W = np.cos(_W).astype(np.float32), np.sin(_W).astype(np.float32)
# Periodic; analysis x synthesis windows sum to 2. The spectral path runs in float32.
_WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:-1]).astype(np.float32)
# Frication noise is about this much louder than the voiced source for equal amplitudes, so
# that /s/ sits ~10 dB below a vowel as in running speech.
_FRICATION_GAIN = 2.0
# Higher-pole correction (after Klatt 1980): even with F6-F8 the unity-DC all-pole cascade falls
# faster than real speech above 1 kHz. This shelf brings the long-term spectrum of the voiced
# speech close to the international average (Byrne et al. 1994: about -12 dB at 2 kHz and
# -19 dB at 4 kHz below the 500 Hz peak).
_HIGHER_POLES = (1.0 + (FREQS / 700.0) ** 2) ** 0.7 / (1.0 + (FREQS / 6000.0) ** 2)


def _stft(x: np.ndarray, n_frames: int) -> np.ndarray:
    """(N,) -> (T, K) complex; frame t is centred on sample t * HOP."""
    padded = np.pad(x.astype(np.float32), (N_FFT // 2, N_FFT // 2 + HOP))
    frames = sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    return rfft(frames * _WINDOW, axis=1)


def _istft(spec: np.ndarray, n: int) -> np.ndarray:
    """(T, K) -> (N,) by overlap-add of 4 blocks per frame (hop = N_FFT / 4)."""
    frames = irfft(spec, n=N_FFT, axis=1) * _WINDOW
    t = len(frames)
    blocks = np.zeros((t + 3, HOP), np.float32)
    for j in range(4):
        blocks[j:j + t] += frames[:, j * HOP:(j + 1) * HOP]
    return blocks.ravel()[N_FFT // 2:N_FFT // 2 + n] / 2.0


def _resonator_power(freq: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """|H|^2 of Klatt resonators (unity DC gain): (M,) centre/bandwidth -> (M, K)."""
    r = np.exp(-np.pi * bw / SAMPLE_RATE).astype(np.float32)[:, None]
    theta = (2.0 * np.pi * freq / SAMPLE_RATE).astype(np.float32)
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    base = 1.0 + r * r
    cross = 2.0 * r * (_COS_W * c)
    sine = 2.0 * r * (_SIN_W * s)
    dc = base - 2.0 * r * c
    return (dc * dc) / ((base - cross - sine) * (base - cross + sine))


def _tract_gain(tr: FrameTracks, static: np.ndarray) -> np.ndarray:
    """Magnitude response (T, K) of the vocal tract for every frame.

    F1-F3 move and are evaluated every other frame (they are smoothed over 50 ms); F4/F5
    barely move and are evaluated once at their median, times ``static`` (K,) (the speaker's
    higher formants and fossa, see :func:`_static_power`).
    """
    t = len(tr.f0)
    power = np.ones((len(tr.f0[::2]), len(FREQS)), np.float32)
    for k in range(3):
        power *= _resonator_power(tr.formants[::2, k], tr.bandwidths[::2, k])
    power = np.repeat(power, 2, axis=0)[:t]
    hi = _resonator_power(np.median(tr.formants[:, 3:], axis=0),
                          np.median(tr.bandwidths[:, 3:], axis=0))
    power *= hi.prod(axis=0) * static
    nasal = np.flatnonzero(tr.nasal > 0.02)
    if len(nasal):  # nasal pole near 250 Hz and place-dependent antiresonance, mixed by coupling
        pole = _resonator_power(np.full(len(nasal), 260.0), np.full(len(nasal), 100.0))
        zero = 1.0 / _resonator_power(tr.nasal_zero[nasal], np.full(len(nasal), 150.0))
        w = tr.nasal[nasal, None]
        power[nasal] *= (1.0 - w) + w * pole * zero
    return np.sqrt(power).astype(np.float32)


def _frication_gain(tr: FrameTracks, scale: float) -> np.ndarray:
    """Magnitude (T, K): each frame's noise band, a skewed Gaussian in log frequency."""
    fc, width = tr.fric_shapes[:, :1], tr.fric_shapes[:, 1:]
    octaves = np.log2(np.maximum(FREQS, 50.0) / fc)
    # Steeper below the centre than above, as sibilant spectra are.
    octaves = np.where(octaves < 0, octaves * 1.5, octaves) / width
    shapes = (np.exp(-0.5 * octaves ** 2) * scale).astype(np.float32)
    return shapes[tr.fric_index]


def _glottal_source(f0: np.ndarray, creak: np.ndarray, voice: SpeakerVoice,
                    rng: np.random.Generator, open_quotient: float,
                    tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """Glottal flow derivative (unit RMS) and flow (0..1), both (N,), for an F0 track (N,) Hz.

    ``creak`` (N,) 0..1 multiplies jitter by up to 5 and shimmer by up to 4 (vocal fry).
    """
    n_cycles = int(f0.sum() / SAMPLE_RATE) + 3
    rough = np.floor(np.cumsum(f0) / SAMPLE_RATE).astype(int)
    # Jitter: each (approximate) cycle gets its own period perturbation.
    jitter = voice.jitter * (1.0 + 4.0 * creak)
    phase = np.cumsum(f0 * np.exp(jitter * rng.standard_normal(n_cycles)[rough]))
    phase /= SAMPLE_RATE
    cycle = phase.astype(int)
    p = phase - cycle
    sq = voice.speed_quotient
    tp, tn = open_quotient * sq / (1.0 + sq), open_quotient / (1.0 + sq)
    flow = np.zeros_like(p)
    rise = p < tp
    fall = ~rise & (p < open_quotient)
    flow[rise] = 0.5 - 0.5 * np.cos((np.pi / tp) * p[rise])
    flow[fall] = np.cos((0.5 * np.pi / tn) * (p[fall] - tp))
    shimmer = rng.standard_normal(cycle[-1] + 2)[cycle]
    shimmer = np.exp(voice.shimmer * (1.0 + 3.0 * creak) * shimmer)
    deriv = np.diff(flow * shimmer, prepend=0.0)
    deriv = lfilter([1.0 - tilt], [1.0, -tilt], deriv)
    return deriv / (np.sqrt(np.mean(deriv ** 2)) + 1e-12), flow


_FRACTION = np.arange(HOP) / HOP


def _to_samples(track: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of a frame track (T,) to samples (N,); ``(T - 1) * HOP >= N``."""
    return (track[:-1, None] + np.diff(track)[:, None] * _FRACTION).ravel()[:n]


def speak(voice: SpeakerVoice, rng: np.random.Generator, n_samples: int,
          channel_gain: np.ndarray | None = None) -> np.ndarray:
    """Synthesise ``n_samples`` of random speech by ``voice`` (dry, before the room).

    Parameters
    ----------
    voice : SpeakerVoice
    rng : np.random.Generator
        Draws the phone sequence, prosody and noise.
    n_samples : int
        Length N of the output at 16 kHz.
    channel_gain : np.ndarray, shape (K,), optional
        A static magnitude response (microphone / channel EQ) applied in the same pass.

    Returns
    -------
    np.ndarray, shape (N,)
        The waveform, scaled to unit RMS over the voiced frames (the active speech level that
        SNRs refer to).
    """
    n_frames = (n_samples - 1) // HOP + 2
    tr = utterance_tracks(voice, rng, n_frames, HOP / SAMPLE_RATE)
    # Session variability of the voice source: effort changes open quotient and tilt a little.
    oq = float(np.clip(voice.open_quotient * np.exp(rng.normal(0.0, 0.08)), 0.25, 0.9))
    tilt = float(np.clip(voice.tilt + rng.normal(0.0, 0.05), 0.0, 0.9))
    deriv, flow = _glottal_source(_to_samples(tr.f0, n_samples),
                                  _to_samples(tr.creak, n_samples), voice, rng, oq, tilt)
    voicing = _to_samples(tr.voicing, n_samples)
    noise = rng.standard_normal(n_samples)
    aspiration = noise * (voice.breathiness * 2.0 * flow * voicing
                          + _to_samples(tr.aspiration, n_samples))
    voiced = deriv * voicing + aspiration
    frication = rng.standard_normal(n_samples) * _to_samples(tr.frication, n_samples)
    spec = _stft(voiced, n_frames) * _tract_gain(tr, _static_power(voice))
    spec += _stft(frication, n_frames) * _frication_gain(tr, _FRICATION_GAIN)
    if channel_gain is not None:
        spec *= channel_gain.astype(np.float32)
    out = _istft(spec, n_samples)
    active = np.repeat(tr.voicing > 0.3, HOP)[:n_samples]
    level = np.sqrt(np.mean(out[active] ** 2 if active.any() else out ** 2)) + 1e-12
    return out / level


def _static_power(voice: SpeakerVoice) -> np.ndarray:
    """(K,) power response of the speaker's fixed upper tract: F6-F8 and the fossa.

    A uniform tube has a formant every ~1 kHz (x the speaker's scale); F6 and up barely move
    with the vowel, and without them an all-pole cascade falls far too steeply above F5. The
    piriform-fossa antiresonance is a zero (200 Hz wide) over a pole (1 kHz wide) at the same
    frequency: a notch of about -14 dB, flat far from it, mixed in with the speaker's depth.
    """
    upper = np.array([5500.0, 6500.0, 7500.0]) * voice.vtl_scale * voice.formant_offsets[4]
    upper = upper[upper < 7800.0]
    power = _resonator_power(upper, np.array([400.0, 500.0, 600.0])[: len(upper)]
                             * voice.bandwidth_scale).prod(axis=0)
    fc = np.array([voice.fossa_freq])
    notch = _resonator_power(fc, np.array([1000.0]))[0] / _resonator_power(fc, np.array([200.0]))[0]
    return power * ((1.0 - voice.fossa_depth) + voice.fossa_depth * notch) * _HIGHER_POLES
