"""Speech activity detection: Silero VAD (ONNX), an energy fallback, oracle and none.

Every detector maps a 16 kHz waveform (N,) to speech regions ``[(start, end), ...]`` in seconds.

- :class:`SileroVAD` runs the Silero VAD v5 network whose ONNX file ships inside the
  ``silero-vad`` wheel (``silero_vad/data/silero_vad_16k_sequence.onnx``, the batched export of
  the streaming model) with onnxruntime directly: nothing is downloaded and torch.hub is never
  called. Audio is cut into 32 ms frames (512 samples), each prefixed by the previous frame's last
  64 samples, and a block of up to 512 frames is one ONNX call with the LSTM state carried
  between blocks, so an hour of audio is ~220 calls instead of 112,500. The network sees the
  recording at a set level (:func:`level_gain`): Silero's probabilities fall with the input
  level, so quiet speech is missed (pyannote's real sample at -40 dB loses a sixth of its speech
  in ``silero_vad.get_speech_timestamps``; a synthetic conversation spoken at -42 dBFS lost
  a fifth).
- :class:`EnergyVAD` thresholds frame log-energy between the recording's noise floor and its
  loud frames; used when ``silero-vad`` or ``onnxruntime`` is not installed.
- ``oracle`` takes the regions from a reference RTTM, ``none`` the whole recording.

Both detectors turn frame decisions into regions with Silero's rules (its
``get_speech_timestamps`` defaults, reimplemented in :func:`regions_from_probabilities`):
speech starts at a frame with probability >= ``threshold``, ends at the first frame below
``neg_threshold`` (``threshold - 0.15``) once ``min_silence`` has passed without a frame back
above ``threshold``; regions not longer than ``min_speech`` are dropped; each region is padded
by ``pad`` on both sides, and gaps narrower than two pads are split at their middle.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from r2n_audio.diarization.segments import Turn
from r2n_audio.errors import R2NError

__all__ = ["SileroVAD", "EnergyVAD", "regions_from_probabilities", "regions_from_turns",
           "make_vad", "level_gain", "VAD_NAMES", "SILERO_LEVEL", "silero_available"]

logger = logging.getLogger(__name__)

VAD_NAMES = ("silero", "energy", "oracle", "none")
SAMPLE_RATE = 16000
FRAME = 512  # samples per Silero frame at 16 kHz (32 ms)
_CONTEXT = 64  # samples of the previous frame each frame sees
_MODEL_FILE = "silero_vad_16k_sequence.onnx"
# The level Silero hears: the 99.9th percentile of |x| (a loud peak, not one click). 0.3 at the
# 99th, 0.5 at the 99.9th and 0.9 at the peak were within 0.2 points of each other in VAD error
# and true-count DER on held-out conversation sets.
SILERO_LEVEL = 0.5
_MAX_GAIN = 100.0  # 40 dB: a file of faint hiss is not lifted to full scale


def regions_from_probabilities(probs: np.ndarray, n_samples: int, threshold: float = 0.5,
                               neg_threshold: float | None = None, min_speech: float = 0.25,
                               min_silence: float = 0.1, pad: float = 0.03,
                               frame: int = FRAME, sample_rate: int = SAMPLE_RATE
                               ) -> list[tuple[int, int]]:
    """Speech regions ``[(start, end), ...]`` in samples from per-frame probabilities (T,).

    See the module docstring for the rules; the defaults are ``get_speech_timestamps``'s.
    """
    neg = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
    min_speech_n, min_silence_n = sample_rate * min_speech, sample_rate * min_silence
    regions: list[list[int]] = []
    start = silence_from = None
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        position = i * frame
        if p >= threshold:
            silence_from = None
            if start is None:
                start = position
        elif start is not None and p < neg:
            silence_from = position if silence_from is None else silence_from
            if position - silence_from >= min_silence_n:
                if silence_from - start > min_speech_n:
                    regions.append([start, silence_from])
                start = silence_from = None
    if start is not None and n_samples - start > min_speech_n:
        regions.append([start, n_samples])
    return _pad(regions, int(sample_rate * pad), n_samples)


def _pad(regions: list[list[int]], pad: int, n_samples: int) -> list[tuple[int, int]]:
    """Widen regions by ``pad`` samples each side; a narrower gap is split at its middle."""
    for i, region in enumerate(regions):
        region[0] = max(0, region[0] - pad) if i == 0 else region[0]
        if i + 1 < len(regions):
            gap = regions[i + 1][0] - region[1]
            half = gap // 2 if gap < 2 * pad else pad
            region[1] += half
            regions[i + 1][0] = max(0, regions[i + 1][0] - half)
        else:
            region[1] = min(n_samples, region[1] + pad)
    return [(a, b) for a, b in regions]


def _model_path() -> Path | None:
    """The ONNX file inside the installed silero-vad wheel, found without importing the package:
    its ``__init__`` calls ``torch.set_num_threads(1)``, which would leave every later torch op
    of the process (the embeddings) on one core."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _MODEL_FILE
    return path if path.is_file() else None


def silero_available() -> bool:
    """Whether the silero-vad wheel (with its ONNX file) and onnxruntime are installed."""
    return importlib.util.find_spec("onnxruntime") is not None and _model_path() is not None


def level_gain(wave: np.ndarray, level: float | None = SILERO_LEVEL) -> float:
    """The gain that brings the 99.9th percentile of ``|wave|`` (N,) to ``level``, at most
    40 dB; 1 when ``level`` is None or the wave is silent.

    The percentile is taken over every 4th sample: an hour of audio is not copied whole.

    Examples
    --------
    >>> level_gain(np.full(1000, 0.0625, dtype=np.float32), 0.5)
    8.0
    >>> level_gain(np.full(1000, 1e-4, dtype=np.float32), 0.5)  # the 40 dB cap
    100.0
    """
    if level is None or len(wave) == 0:
        return 1.0
    loud = float(np.percentile(np.abs(np.asarray(wave, dtype=np.float32)[::4]), 99.9))
    return min(level / loud, _MAX_GAIN) if loud > 0 else 1.0


class SileroVAD:
    """Silero VAD through onnxruntime (see the module docstring).

    Parameters
    ----------
    threshold, neg_threshold, min_speech, min_silence, pad :
        Region rules of :func:`regions_from_probabilities` (seconds for the durations).
    block_frames : int
        Frames per ONNX call.
    level : float, optional
        Regions are found on the recording scaled by :func:`level_gain` ``(wave, level)``;
        None: as given (what ``silero_vad.get_speech_timestamps`` does).
    """

    def __init__(self, threshold: float = 0.5, neg_threshold: float | None = None,
                 min_speech: float = 0.25, min_silence: float = 0.1, pad: float = 0.03,
                 block_frames: int = 512, level: float | None = SILERO_LEVEL) -> None:
        if not silero_available():
            raise R2NError("--vad silero needs the silero-vad and onnxruntime packages "
                           "(pip install silero-vad onnxruntime), or use --vad energy")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(_model_path()), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self.rules = dict(threshold=threshold, neg_threshold=neg_threshold,
                          min_speech=min_speech, min_silence=min_silence, pad=pad)
        self.block_frames = int(block_frames)
        self.level = level

    def probabilities(self, wave: np.ndarray, gain: float = 1.0) -> np.ndarray:
        """Speech probability (T,) of each 32 ms frame of a 16 kHz waveform (N,) times ``gain``."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        n_frames = -(-len(wave) // FRAME)
        h = np.zeros((1, 1, 128), dtype=np.float32)
        c = np.zeros((1, 1, 128), dtype=np.float32)
        out = []
        for first in range(0, n_frames, self.block_frames):
            # One block of frames at a time: an hour of audio never exists twice in memory.
            count = min(self.block_frames, n_frames - first)
            lo = first * FRAME
            body = np.zeros(count * FRAME + _CONTEXT, dtype=np.float32)
            piece = wave[max(0, lo - _CONTEXT):lo + count * FRAME]
            body[_CONTEXT - (lo - max(0, lo - _CONTEXT)):][:len(piece)] = piece
            if gain != 1.0:
                body *= gain
            frames = np.lib.stride_tricks.sliding_window_view(body, _CONTEXT + FRAME)[::FRAME]
            probs, h, c = self.session.run(["speech_probs", "hn", "cn"], {
                "input": np.ascontiguousarray(frames[:count]), "h": h, "c": c})
            out.append(probs.reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def __call__(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE
                 ) -> list[tuple[float, float]]:
        """Speech regions in seconds (found at the set ``level``)."""
        _check_rate(sample_rate)
        probs = self.probabilities(wave, level_gain(wave, self.level))
        regions = regions_from_probabilities(probs, len(wave), **self.rules)
        return [(a / sample_rate, b / sample_rate) for a, b in regions]


class EnergyVAD:
    """Frame log-energy against the recording's own noise floor.

    A 32 ms frame is speech when its energy is above the floor (10th percentile of frame
    energies in dB) by ``fraction`` of the floor-to-peak (99th percentile) range and by at least
    ``margin_db``; a recording whose range is under ``margin_db`` has no speech. Regions follow
    the same rules as Silero's.
    """

    def __init__(self, fraction: float = 0.3, margin_db: float = 6.0, min_speech: float = 0.25,
                 min_silence: float = 0.1, pad: float = 0.03) -> None:
        self.fraction, self.margin_db = float(fraction), float(margin_db)
        self.rules = dict(threshold=0.5, neg_threshold=0.5, min_speech=min_speech,
                          min_silence=min_silence, pad=pad)

    def decisions(self, wave: np.ndarray) -> np.ndarray:
        """1.0 for speech frames, 0.0 otherwise (T,)."""
        wave = np.asarray(wave, dtype=np.float64).reshape(-1)
        n_frames = -(-len(wave) // FRAME)
        body = np.zeros(n_frames * FRAME)
        body[:len(wave)] = wave
        energy = 10.0 * np.log10(np.mean(body.reshape(n_frames, FRAME) ** 2, axis=1) + 1e-12)
        if n_frames == 0:
            return energy
        floor, peak = np.percentile(energy, [10, 99])
        if peak - floor < self.margin_db or peak < -80.0:
            return np.zeros(n_frames)
        threshold = floor + max(self.margin_db, self.fraction * (peak - floor))
        return (energy > threshold).astype(np.float64)

    def __call__(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE
                 ) -> list[tuple[float, float]]:
        """Speech regions in seconds."""
        _check_rate(sample_rate)
        regions = regions_from_probabilities(self.decisions(wave), len(wave), **self.rules)
        return [(a / sample_rate, b / sample_rate) for a, b in regions]


def _check_rate(sample_rate: int) -> None:
    if sample_rate != SAMPLE_RATE:
        raise R2NError(f"the VAD runs at {SAMPLE_RATE} Hz, got {sample_rate} Hz audio")


def regions_from_turns(turns: Sequence[Turn]) -> list[tuple[float, float]]:
    """The union of reference turns as sorted, disjoint regions (``--vad oracle``)."""
    regions: list[list[float]] = []
    for start, end, _ in sorted(turns):
        if end <= start:
            continue
        if regions and start <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], end)
        else:
            regions.append([start, end])
    return [(a, b) for a, b in regions]


def make_vad(name: str, **options) -> SileroVAD | EnergyVAD | None:
    """The detector called ``name`` (``oracle`` and ``none`` need no model: ``None``).

    ``silero`` falls back to :class:`EnergyVAD` (said once in the log) when its packages are
    missing.
    """
    if name not in VAD_NAMES:
        raise R2NError(f"unknown VAD {name!r}; choose one of {', '.join(VAD_NAMES)}")
    if name == "silero":
        if silero_available():
            return SileroVAD(**options)
        logger.warning("silero-vad or onnxruntime is not installed: using the energy VAD")
        return EnergyVAD()
    return EnergyVAD(**options) if name == "energy" else None
