"""Speech-like phone sequences turned into frame-level synthesis-parameter tracks.

An utterance is a random sequence of phrases of words of (C)(C)V(C) syllables drawn from a
small English-like inventory: monophthongs and diphthongs (Peterson & Barney 1952 formant
targets), approximants, nasals (with a nasal pole and an antiresonance), fricatives (noise bands
at their place of articulation) and stops (closure, burst, aspiration), with pauses between
phrases. Formants move smoothly between targets (consonant loci give the transitions), pitch
follows phrase declination with accents on stressed syllables, a final fall and slow
wandering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import convolve1d

if TYPE_CHECKING:
    from r2n_audio.data.synthetic.voice import SpeakerVoice

__all__ = ["VOWEL_NAMES", "FrameTracks", "utterance_tracks"]

# Adult-male F1-F3 targets in Hz (Peterson & Barney 1952).
_VOWELS = {
    "i": (270, 2290, 3010), "I": (390, 1990, 2550), "E": (530, 1840, 2480),
    "ae": (660, 1720, 2410), "a": (730, 1090, 2440), "O": (570, 840, 2410),
    "U": (440, 1020, 2240), "u": (300, 870, 2240), "V": (640, 1190, 2390),
    "3": (490, 1350, 1690),
}
VOWEL_NAMES = tuple(_VOWELS)
_VOWEL_CENTRE = np.exp(np.log(np.array(list(_VOWELS.values()), float)[:, :2]).mean(axis=0))
_VOWEL_INDEX = {v: i for i, v in enumerate(VOWEL_NAMES)}
_DIPHTHONGS = (("a", "I"), ("E", "I"), ("O", "I"), ("a", "U"), ("V", "U"))

# Consonant loci (F1-F3, Hz): where formants point during closure or constriction.
_LOCI = {"lab": (250, 900, 2200), "alv": (250, 1700, 2600), "pal": (250, 2000, 2700)}
_APPROX = {"l": (360, 1100, 2700), "r": (420, 1150, 1600), "w": (300, 650, 2200),
           "j": (260, 2100, 3000)}
# name -> (place, nasal antiresonance Hz)
_NASALS = {"m": ("lab", 1000.0), "n": ("alv", 1700.0), "N": ("vel", 3000.0)}
# name -> (place, frication centre Hz, width in octaves, amplitude, voiced)
_FRICATIVES = {
    "s": ("alv", 5500.0, 0.6, 0.40, False), "z": ("alv", 5500.0, 0.6, 0.25, True),
    "S": ("pal", 3000.0, 0.8, 0.45, False), "Z": ("pal", 3000.0, 0.8, 0.28, True),
    "f": ("lab", 5000.0, 2.5, 0.10, False), "v": ("lab", 5000.0, 2.5, 0.07, True),
    "T": ("alv", 5000.0, 2.5, 0.08, False), "D": ("alv", 5000.0, 2.5, 0.06, True),
}
# name -> (place, burst centre Hz (0 = from the next vowel), burst width octaves, voiced)
_STOPS = {
    "p": ("lab", 1200.0, 2.0, False), "b": ("lab", 1200.0, 2.0, True),
    "t": ("alv", 4500.0, 1.2, False), "d": ("alv", 4500.0, 1.2, True),
    "k": ("vel", 0.0, 0.6, False), "g": ("vel", 0.0, 0.6, True),
}
_ONSETS = tuple(_STOPS) + tuple(_FRICATIVES) + ("h",) + tuple(_NASALS) + tuple(_APPROX)
_CODAS = tuple(_STOPS) + tuple(_FRICATIVES) + tuple(_NASALS) + ("l", "r")

_REF_FORMANTS_HI = (3500.0, 4500.0)
_REF_BANDWIDTHS = np.array([60.0, 90.0, 150.0, 250.0, 300.0])


@dataclass
class FrameTracks:
    """Synthesis parameters per frame (frame ``t`` is centred on sample ``t * hop``).

    Attributes
    ----------
    formants, bandwidths : np.ndarray, shape (T, 5)
        F1..F5 and their bandwidths in Hz.
    f0 : np.ndarray, shape (T,)
        Fundamental frequency in Hz (defined everywhere, used where voiced).
    voicing, aspiration, frication : np.ndarray, shape (T,)
        Linear amplitudes of the glottal source, of aspiration noise through the tract, and of
        frication noise.
    nasal : np.ndarray, shape (T,)
        Nasal coupling 0..1; ``nasal_zero`` (T,) is the antiresonance frequency in Hz.
    creak : np.ndarray, shape (T,)
        1 where the voice drops into creak (vocal fry) at the end of a phrase.
    fric_index : np.ndarray, shape (T,), int
        Row of ``fric_shapes`` ((S, 2): centre Hz, width in octaves) for each frame.
    """

    formants: np.ndarray
    bandwidths: np.ndarray
    f0: np.ndarray
    voicing: np.ndarray
    aspiration: np.ndarray
    frication: np.ndarray
    nasal: np.ndarray
    nasal_zero: np.ndarray
    creak: np.ndarray
    fric_index: np.ndarray
    fric_shapes: np.ndarray


class _Builder:
    """Accumulates segments (one row per run of frames with constant targets)."""

    def __init__(self) -> None:
        # (frames, F1, F2, F3, voicing, aspiration, frication, nasal, zero, fric, stress, creak,
        #  phrase)
        self.rows: list[tuple] = []
        self.shapes: list[tuple[float, float]] = [(1000.0, 1.0)]
        self.phrase = 0

    def add(self, frames, formants, av=0.0, ah=0.0, af=0.0, nasal=0.0, zero=0.0,
            fric=None, stress=0.0, creak=0.0) -> None:
        frames = max(1, int(round(frames)))
        index = 0
        if fric is not None:
            self.shapes.append(fric)
            index = len(self.shapes) - 1
        self.rows.append((frames, *formants, av, ah, af, nasal, zero, index, stress, creak,
                          self.phrase))

    def frames(self) -> int:
        return sum(r[0] for r in self.rows)


def _vowel_formants(voice: SpeakerVoice, name: str) -> np.ndarray:
    f = np.asarray(_VOWELS[name], float) * voice.vowel_offsets[_VOWEL_INDEX[name]]
    # The speaker's vowel-space size: F1 and F2 pushed from (or pulled to) the centre.
    f[:2] = _VOWEL_CENTRE * (f[:2] / _VOWEL_CENTRE) ** voice.vowel_space
    return f


def _locus(place: str, next_vowel: np.ndarray) -> np.ndarray:
    if place == "vel":  # velar pinch: F2 and F3 close together, following the vowel's F2
        f2 = float(np.clip(next_vowel[1] * 1.1, 1300.0, 2300.0))
        return np.array([250.0, f2, f2 + 350.0])
    return np.asarray(_LOCI[place], float)


def _consonant(b: _Builder, c: str, vowel: np.ndarray, scale: float, ms: float, rng,
               fric_shift: float = 1.0) -> None:
    """Append consonant ``c`` next to a vowel with formants ``vowel``; ``ms`` = frames per ms;
    ``fric_shift`` moves the speaker's noise centres."""
    if c in _STOPS:
        place, fc, width, voiced = _STOPS[c]
        locus = _locus(place, vowel)
        fc = fc if fc else vowel[1] * 1.25
        b.add(rng.uniform(45, 90) * ms, locus, av=0.06 if voiced else 0.0)
        b.add(1, locus, af=rng.uniform(0.4, 0.8), fric=(fc * scale * fric_shift, width))
        vot = rng.uniform(5, 15) if voiced else rng.uniform(35, 75)
        b.add(vot * ms, 0.5 * (locus + vowel), ah=0.15 if voiced else 0.3)
    elif c in _FRICATIVES:
        place, fc, width, amp, voiced = _FRICATIVES[c]
        b.add(rng.uniform(70, 130) * ms, _locus(place, vowel), av=0.25 if voiced else 0.0,
              af=amp, fric=(fc * scale * fric_shift, width))
    elif c == "h":
        b.add(rng.uniform(50, 90) * ms, vowel, ah=0.3)
    elif c in _NASALS:
        place, zero = _NASALS[c]
        b.add(rng.uniform(50, 90) * ms, _locus(place, vowel), av=0.4, nasal=1.0,
              zero=zero * scale)
    else:
        b.add(rng.uniform(40, 80) * ms, np.asarray(_APPROX[c], float), av=0.6)


def _syllable(b: _Builder, voice: SpeakerVoice, rng, stressed: bool, final: bool, ms: float,
              creak: bool = False):
    scale = voice.vtl_scale
    diph = rng.random() < 0.15
    names = _DIPHTHONGS[rng.integers(len(_DIPHTHONGS))] if diph else (
        VOWEL_NAMES[rng.integers(len(VOWEL_NAMES))],)
    targets = [_vowel_formants(voice, n) for n in names]
    if rng.random() < 0.8:
        onset = _ONSETS[rng.integers(len(_ONSETS))]
        _consonant(b, onset, targets[0], scale, ms, rng, voice.fric_shift)
        if onset in _STOPS and rng.random() < 0.2:
            _consonant(b, ("l", "r", "w")[rng.integers(3)], targets[0], scale, ms, rng)
    length = rng.uniform(70, 150) * (1.4 if stressed else 1.0) * (1.5 if final else 1.0)
    amp = 1.0 if stressed else rng.uniform(0.55, 0.85)
    for target in targets:
        b.add(length * ms / len(targets), target, av=amp, stress=float(stressed),
              creak=float(creak), nasal=voice.nasality)
    if rng.random() < 0.45:
        _consonant(b, _CODAS[rng.integers(len(_CODAS))], targets[-1], scale, ms, rng,
                   voice.fric_shift)


def _segments(voice: SpeakerVoice, rng, n_frames: int, hop_s: float) -> _Builder:
    """Phrases of words of syllables until ``n_frames`` are filled."""
    ms = 1e-3 / hop_s / (voice.rate * np.exp(rng.normal(0.0, 0.08)))
    b = _Builder()
    silence = np.array([500.0, 1500.0, 2500.0])
    b.add(rng.uniform(40, 250) * ms, silence)
    while b.frames() < n_frames:
        n_words = rng.integers(2, 7)
        for w in range(n_words):
            n_syl = rng.integers(1, 4)
            stress = rng.integers(n_syl)
            for s in range(n_syl):
                final = w == n_words - 1 and s == n_syl - 1
                _syllable(b, voice, rng, s == stress, final, ms,
                          creak=final and rng.random() < voice.creak)
            if w < n_words - 1 and rng.random() < 0.12:
                b.add(rng.uniform(60, 200) * ms, silence)
        b.add(rng.uniform(150, 450) * ms, silence)
        b.phrase += 1
    return b


def _smooth(x: np.ndarray, frames: int) -> np.ndarray:
    """Hann-window moving average along axis 0 (edges held)."""
    if frames < 2:
        return x
    kernel = np.hanning(frames + 2)[1:-1]
    return convolve1d(x, kernel / kernel.sum(), axis=0, mode="nearest")


def _pitch(voice: SpeakerVoice, rng, stress: np.ndarray, phrase: np.ndarray,
           hop_s: float) -> np.ndarray:
    """F0 contour in Hz: declination per phrase, accents, final fall, slow wander."""
    n = len(stress)
    t = np.arange(n) * hop_s
    semis = np.zeros(n)
    for p in np.unique(phrase):
        idx = np.flatnonzero(phrase == p)
        span = max(t[idx[-1]] - t[idx[0]], hop_s)
        decl = rng.uniform(0.5, 2.0) - rng.uniform(1.5, 4.0) * (t[idx] - t[idx[0]]) / span
        semis[idx] = decl
    starts = np.flatnonzero(np.diff(np.concatenate([[0.0], stress])) > 0)
    for s in starts:
        height = rng.uniform(0.3, 1.0) * voice.f0_range * rng.choice([1.0, 1.0, -0.5])
        semis += height * np.exp(-0.5 * ((t - t[s] - 0.05) / rng.uniform(0.05, 0.1)) ** 2)
    wander = _smooth(rng.normal(0.0, 1.0, n), int(0.3 / hop_s))
    semis += 0.6 * wander / (wander.std() + 1e-9) + rng.normal(0.0, 1.0)
    return voice.f0 * 2.0 ** (semis / 12.0)


def utterance_tracks(voice: SpeakerVoice, rng: np.random.Generator, n_frames: int,
                     hop_s: float) -> FrameTracks:
    """Draw a random phone sequence for ``voice`` and return its parameter tracks.

    Parameters
    ----------
    voice : SpeakerVoice
    rng : np.random.Generator
    n_frames : int
        Number of frames T to fill.
    hop_s : float
        Frame hop in seconds.
    """
    b = _segments(voice, rng, n_frames, hop_s)
    rows = np.asarray(b.rows, float)
    per = np.repeat(rows[:, 1:], rows[:, 0].astype(int), axis=0)[:n_frames]
    av, ah, af, nasal, zero, fric, stress, creak, phrase = per[:, 3:].T
    scale = voice.vtl_scale * np.exp(rng.normal(0.0, 0.01))
    hi = np.broadcast_to(_REF_FORMANTS_HI, (n_frames, 2))
    formants = np.concatenate([per[:, :3], hi], axis=1) * scale * voice.formant_offsets
    formants = np.exp(_smooth(np.log(formants), int(round(voice.transition_s / hop_s))))
    for k in range(1, 5):  # keep formants ordered with a minimum spacing
        formants[:, k] = np.maximum(formants[:, k], formants[:, k - 1] + 150.0 + 50.0 * k)
    nasal = _smooth(nasal, 5)
    creak = _smooth(creak, 5)
    widen = 1.0 + nasal[:, None] * np.array([1.0, 0.6, 0.6, 0.4, 0.4])
    zero = np.where(zero > 0, zero, 1500.0 * voice.vtl_scale)
    return FrameTracks(
        formants=np.minimum(formants, 7600.0),
        bandwidths=_REF_BANDWIDTHS * voice.bandwidth_scale * voice.bandwidth_profile * widen,
        f0=_pitch(voice, rng, stress, phrase, hop_s) * 2.0 ** (-creak * rng.uniform(0.6, 1.0)),
        creak=creak,
        voicing=_smooth(av, 3),
        aspiration=_smooth(ah, 3),
        frication=af,
        nasal=nasal,
        nasal_zero=_smooth(zero, 5),
        fric_index=fric.astype(int),
        fric_shapes=np.asarray(b.shapes, float),
    )
