"""Synthetic speakers: the parameters of a source-filter voice that stay fixed for a speaker.

What makes a synthetic speaker recognisable is what makes a real one recognisable: the length
of the vocal tract (all formants scaled together, Fant 1960), speaker-specific deviations of the
formants from the population's vowel targets (an "accent"), the fixed upper formants F4/F5 and
the hypopharyngeal (piriform fossa) antiresonance near 4-5 kHz (Kitamura et al. 2005), the
glottal source (mean pitch, pitch range, open quotient, return-phase tilt, breathiness, jitter,
shimmer), the speaking rate and articulation habits (vowel-space size, fricative peaks,
formant bandwidths, glide speed, nasality). The distributions are wide enough that speakers
overlap on every single cue, as real speakers do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from r2n_audio.data.synthetic.phonetics import VOWEL_NAMES

__all__ = ["SpeakerVoice", "sample_speaker"]


@dataclass(frozen=True)
class SpeakerVoice:
    """Fixed voice parameters of one synthetic speaker.

    Attributes
    ----------
    sex : str
        ``"male"`` or ``"female"``; only sets the centres of the other distributions.
    f0 : float
        Mean fundamental frequency in Hz.
    f0_range : float
        Typical size of pitch accents in semitones.
    vtl_scale : float
        Formant scale factor (inverse vocal-tract length; 1.0 = adult male reference).
    formant_offsets : np.ndarray, shape (5,)
        Multiplicative deviation of F1..F5 from the scaled population targets.
    vowel_offsets : np.ndarray, shape (V, 3)
        Per-vowel multiplicative deviation of F1..F3 (speaker's own vowel qualities).
    bandwidth_scale : float
        Multiplies every formant bandwidth (wider = more damped, "duller" voice).
    open_quotient, speed_quotient : float
        Glottal pulse shape (Rosenberg): open phase / period and opening / closing time.
    tilt : float
        Coefficient of a one-pole low-pass on the glottal derivative (0 = pressed, sharp
        closure; 0.5 = soft, steeper spectral tilt).
    breathiness : float
        Aspiration-noise amplitude relative to the voiced source.
    jitter, shimmer : float
        Cycle-to-cycle relative period and amplitude perturbation (standard deviations).
    nasal_pole : float
        Frequency (Hz) of the nasal-cavity resonance used in nasals.
    fossa_freq, fossa_depth : float
        Piriform-fossa antiresonance frequency (Hz) and depth (0..1).
    rate : float
        Speaking-rate factor (> 1 is faster: shorter segments).
    creak : float
        Probability that a phrase ends in creak (vocal fry: pitch about an octave down, irregular
        periods and amplitudes), a habit some speakers have and others do not.
    vowel_space : float
        Expansion (> 1, hyperarticulation) or compression (< 1) of the F1-F2 vowel space
        around its centre: speakers differ in vowel-space area as much as in its position.
    fric_shift : float
        Multiplies the centres of fricative and burst noise (a speaker's /s/ has its own peak).
    bandwidth_profile : np.ndarray, shape (5,)
        Per-formant bandwidth multipliers on top of ``bandwidth_scale``.
    transition_s : float
        Time over which formants glide between targets (articulatory speed).
    nasality : float
        Nasal coupling 0..1 carried into vowels (hypernasal speakers).
    """

    sex: str
    f0: float
    f0_range: float
    vtl_scale: float
    formant_offsets: np.ndarray
    vowel_offsets: np.ndarray
    bandwidth_scale: float
    open_quotient: float
    speed_quotient: float
    tilt: float
    breathiness: float
    jitter: float
    shimmer: float
    nasal_pole: float
    fossa_freq: float
    fossa_depth: float
    rate: float
    creak: float
    vowel_space: float
    fric_shift: float
    bandwidth_profile: np.ndarray
    transition_s: float
    nasality: float

    def summary(self) -> dict:
        """The scalar parameters as a JSON-ready dict (arrays left out)."""
        return {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in asdict(self).items()
            if not isinstance(v, np.ndarray)
        }


def sample_speaker(rng: np.random.Generator) -> SpeakerVoice:
    """Draw one speaker's voice parameters.

    Parameters
    ----------
    rng : np.random.Generator
        Source of randomness; the same generator state gives the same speaker.

    Returns
    -------
    SpeakerVoice
    """
    female = bool(rng.random() < 0.5)
    # Adult means and spreads after Peterson & Barney (1952) and Hillenbrand et al. (1995):
    # women's F0 ~1.7x and formants ~1.15x men's, with wide overlap between individuals.
    f0 = (205.0 if female else 118.0) * np.exp(rng.normal(0.0, 0.15))
    vtl = (1.15 if female else 1.0) * np.exp(rng.normal(0.0, 0.05))
    return SpeakerVoice(
        sex="female" if female else "male",
        f0=float(f0),
        f0_range=float(rng.uniform(1.0, 4.5)),
        vtl_scale=float(vtl),
        formant_offsets=np.exp(rng.normal(0.0, [0.05, 0.04, 0.04, 0.05, 0.05])),
        vowel_offsets=np.exp(rng.normal(0.0, 0.06, size=(len(VOWEL_NAMES), 3))),
        bandwidth_scale=float(np.exp(rng.normal(0.0, 0.25))),
        open_quotient=float(rng.uniform(0.45, 0.8) if female else rng.uniform(0.35, 0.7)),
        speed_quotient=float(rng.uniform(1.5, 4.0)),
        tilt=float(rng.uniform(0.0, 0.5)),
        breathiness=float(10 ** rng.uniform(-2.3, -1.0) * (1.5 if female else 1.0)),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.10)),
        nasal_pole=float(rng.uniform(230.0, 320.0) * vtl),
        fossa_freq=float(rng.uniform(3900.0, 5200.0) * vtl),
        fossa_depth=float(rng.uniform(0.3, 0.9)),
        rate=float(np.exp(rng.normal(0.0, 0.12))),
        creak=float(rng.uniform(0.0, 0.7) if rng.random() < 0.5 else 0.0),
        # Drawn last, so the parameters above stay what generator version 2 drew.
        vowel_space=float(np.exp(rng.normal(0.0, 0.12))),
        fric_shift=float(np.exp(rng.normal(0.0, 0.1))),
        bandwidth_profile=np.exp(rng.normal(0.0, 0.2, 5)),
        transition_s=float(rng.uniform(0.035, 0.07)),
        nasality=float(rng.uniform(0.0, 0.25) if rng.random() < 0.3 else 0.0),
    )
