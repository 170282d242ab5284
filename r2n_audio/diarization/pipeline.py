"""The diarization pipeline: :class:`Diarizer` (VAD -> windows -> embeddings -> clusters -> turns).

>>> diarizer = Diarizer.from_pretrained("exp/mini/model.pt")          # doctest: +SKIP
>>> turns = diarizer("meeting.wav", num_speakers=None)                 # doctest: +SKIP
>>> turns[0]                                                           # doctest: +SKIP
Turn(start=0.52, end=4.31, speaker='spk1')
>>> turns.annotation                     # a pyannote.core.Annotation   # doctest: +SKIP

Windows (and the longer ``context`` window around each) are embedded by the project's one
embedding path, :class:`Embedder`: by default (``frames="shared"``) with
:meth:`Embedder.embed_windows`, front-end and trunk once per stretch of speech (in blocks of
bounded length); with ``frames="window"`` each window cut out and embedded by
:meth:`Embedder.embed_batch`, ``chunk_windows`` at a time, so never more than one chunk of them
is in memory besides the waveform.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from r2n_audio.audio import load_audio
from r2n_audio.diarization.clustering import MERGE_ABOVE, SPLIT_BELOW, cluster_embeddings
from r2n_audio.diarization.segments import (Turn, context_windows, frames_to_turns,
                                            sliding_windows, speech_mask, vote)
from r2n_audio.diarization.vad import SILERO_LEVEL, make_vad, regions_from_turns
from r2n_audio.errors import AudioError, R2NError
from r2n_audio.inference.embedder import Embedder

__all__ = ["Diarizer", "Diarization", "score_folder"]

_STEP = 0.01  # timeline resolution in seconds
FRAMES = ("window", "shared")  # how windows are embedded (Diarizer.frames)


class Diarization(list):
    """The turns of one recording: a list of :class:`Turn` ``(start, end, speaker)``.

    Attributes
    ----------
    uri : str
        The recording's name (the key, or the file name without extension).
    duration : float
        Recording length in seconds.
    speech_seconds : float
        Speech found by the VAD.
    n_windows : int
        Windows embedded.
    note : str
        Why the result is empty or degenerate ("no speech found"), else "".
    timings : dict
        Seconds spent in ``vad``, ``embed``, ``cluster`` and ``post``.
    """

    def __init__(self, turns=(), uri: str = "audio", duration: float = 0.0,
                 speech_seconds: float = 0.0, n_windows: int = 0, note: str = "",
                 timings: dict | None = None) -> None:
        super().__init__(turns)
        self.uri = uri
        self.duration, self.speech_seconds, self.n_windows = duration, speech_seconds, n_windows
        self.note, self.timings = note, timings if timings is not None else {}

    @property
    def speakers(self) -> list[str]:
        """Speaker labels in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in self))

    @property
    def annotation(self):
        """The turns as a ``pyannote.core.Annotation`` (needs pyannote.core)."""
        from r2n_audio.diarization.der import to_annotation

        return to_annotation(self, uri=self.uri)


@dataclass
class Diarizer:
    """Speaker diarization with an :class:`Embedder`.

    Parameters
    ----------
    embedder : Embedder
    vad : {"silero", "energy", "oracle", "none"}
        Speech detector (``oracle`` needs ``reference`` turns at call time).
    vad_threshold : float
        Silero's speech probability threshold (the other detectors ignore it). 0.35, below
        Silero's own 0.5: on held-out synthetic conversation sets it halved missed speech and
        gave the lowest DER (0.25 and 0.5 were worse); on pyannote's real sample the missed
        speech is the same at 0.25, 0.35 and 0.5.
    vad_level : float, optional
        Silero hears the recording scaled to this level (:func:`.vad.level_gain`: quiet
        speech is missed otherwise); None: as recorded.
    window, hop : float
        Sliding-window length and step in seconds (WeSpeaker's and 3D-Speaker's 1.5 / 0.75).
    context : float
        Seconds of a second, longer window centred on each window, embedded too; the
        clustering affinity averages both scales' cosines (:func:`window_similarity`).
        0 turns it off (one scale, as WeSpeaker and 3D-Speaker).
    clustering : {"spectral", "ahc"}
    threshold : float, optional
        AHC: the cosine distance at which merging stops (default 0.7, ``AHC_THRESHOLD``).
    split_below, merge_above : float, optional
        Spectral clustering with the count estimated: the centroid cosines below which a
        cluster is cut in two and at or above which two are merged
        (:func:`.clustering.refine_clusters`; set with the demo model). None: not done.
    min_duration : float
        Turns shorter than this are given to a touching neighbour or dropped (seconds).
    merge_gap : float
        Same-speaker turns closer than this are joined (seconds).
    chunk_windows : int
        Windows stacked per ``embed_batch`` call (``frames="window"``).
    frames : {"shared", "window"}
        ``window``: each window cut out and embedded alone (:meth:`Embedder.embed_batch`);
        ``shared`` (the default: as accurate or better on held-out conversation sets, and half
        the work): front-end and trunk once per speech region, each window pooled from its
        span of the shared frame-level features (:meth:`Embedder.embed_windows`; embeddings
        differ, see :mod:`r2n_audio.inference.shared_frames`).
    cluster_options : dict
        Extra options for spectral clustering (``p``, ``min_neighbours``, ``seed``...).
    """

    embedder: Embedder
    vad: str = "silero"
    vad_threshold: float = 0.35
    vad_level: float | None = SILERO_LEVEL
    window: float = 1.5
    hop: float = 0.75
    context: float = 3.0
    clustering: str = "spectral"
    threshold: float | None = None
    split_below: float | None = SPLIT_BELOW
    merge_above: float | None = MERGE_ABOVE
    min_duration: float = 0.25
    merge_gap: float = 0.5
    chunk_windows: int = 512
    cluster_options: dict[str, Any] = field(default_factory=dict)
    frames: str = "shared"

    def __post_init__(self) -> None:
        if not 0 < self.hop <= self.window:
            raise R2NError(f"need 0 < --hop <= --window, got {self.hop} and {self.window}")
        if self.context != 0 and not self.context > self.window:
            raise R2NError(f"--context must be 0 (off) or longer than --window, got "
                           f"{self.context} and {self.window}")
        if not 0 < self.vad_threshold < 1:
            raise R2NError(f"need 0 < --vad-threshold < 1, got {self.vad_threshold}")
        if self.vad_level is not None and not self.vad_level > 0:
            raise R2NError(f"vad_level must be > 0, or None for the recording's own level; "
                           f"got {self.vad_level}")
        for name in ("split_below", "merge_above"):
            value = getattr(self, name)
            if value is not None and not -1 <= value <= 1:
                raise R2NError(f"{name} is a cosine: it must be in [-1, 1] or None, got {value}")
        if self.frames not in FRAMES:
            raise R2NError(f"frames must be one of {FRAMES}, got {self.frames!r}")
        self._vad = make_vad(self.vad, **({"threshold": self.vad_threshold,
                                           "level": self.vad_level}
                                          if self.vad == "silero" else {}))

    @classmethod
    def from_pretrained(cls, bundle: str | os.PathLike | dict, device: str = "auto",
                        precision: str = "fp32", **kwargs: Any) -> "Diarizer":
        """A diarizer on :meth:`Embedder.from_pretrained` ``(bundle)``; ``kwargs`` as the class."""
        return cls(Embedder.from_pretrained(bundle, device=device, precision=precision),
                   **kwargs)

    def __call__(self, audio: str | os.PathLike | np.ndarray | torch.Tensor,
                 num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None, reference: list[Turn] | None = None,
                 uri: str | None = None) -> Diarization:
        """Diarize a file or a 16 kHz mono waveform (N,).

        Raises
        ------
        AudioError
            Unreadable file, or shorter than one window (``window`` seconds).
        R2NError
            ``--vad oracle`` without reference turns, more speakers asked than windows.
        """
        name = str(audio) if isinstance(audio, (str, os.PathLike)) else (uri or "waveform")
        wave = _waveform(audio, self.embedder.sample_rate)
        duration = len(wave) / self.embedder.sample_rate
        if duration < self.window:
            raise AudioError(name, f"{duration:.2f} s is shorter than one window "
                                   f"({self.window} s); nothing to diarize")
        timings = {}
        t = time.perf_counter()
        regions = self._speech(wave, duration, reference, name)
        timings["vad"] = time.perf_counter() - t
        result = Diarization(uri=uri or os.path.splitext(os.path.basename(name))[0],
                             duration=duration, timings=timings,
                             speech_seconds=float(sum(b - a for a, b in regions)))
        windows = sliding_windows(regions, self.window, self.hop, duration=duration)
        if len(windows) == 0:
            result.note = "no speech found"
            return result
        t = time.perf_counter()
        spans = windows
        if self.context:  # embedded in the same pass: shared frames serve both lengths
            spans = np.concatenate([windows, context_windows(windows, self.context, duration)])
        emb = self._embed(wave, spans)
        emb, context = emb[:len(windows)], (emb[len(windows):] if self.context else None)
        timings["embed"] = time.perf_counter() - t
        t = time.perf_counter()
        labels = cluster_embeddings(emb, self.clustering, num_speakers, min_speakers,
                                    max_speakers, self.threshold, context=context,
                                    split_below=self.split_below,
                                    merge_above=self.merge_above, **self.cluster_options)
        timings["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        n_frames = int(np.ceil(duration / _STEP))
        frames = vote(windows, labels, speech_mask(regions, n_frames, _STEP), _STEP)
        names = [f"spk{i + 1}" for i in range(int(labels.max()) + 1)]
        result.extend(frames_to_turns(frames, _STEP, names, self.min_duration, self.merge_gap))
        timings["post"] = time.perf_counter() - t
        result.n_windows = len(windows)
        return result

    def _speech(self, wave: np.ndarray, duration: float, reference: list[Turn] | None,
                name: str) -> list[tuple[float, float]]:
        if self.vad == "oracle":
            if reference is None:
                raise R2NError(f"{name}: --vad oracle needs reference turns (--reference)")
            return [(max(0.0, a), min(duration, b)) for a, b in regions_from_turns(reference)
                    if a < duration]
        if self.vad == "none":
            return [(0.0, duration)]
        return self._vad(wave, self.embedder.sample_rate)

    def _embed(self, wave: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Embeddings (W, D) of the windows (W, 2): from shared frames, or cut out and
        embedded ``chunk_windows`` at a time."""
        if self.frames == "shared":
            return self.embedder.embed_windows(wave, windows)
        rate = self.embedder.sample_rate
        bounds = np.round(windows * rate).astype(np.int64)
        bounds[:, 1] = np.minimum(bounds[:, 1], len(wave))
        lengths = bounds[:, 1] - bounds[:, 0]
        out = np.zeros((len(windows), self.embedder.embed_dim), dtype=np.float32)
        for first in range(0, len(windows), self.chunk_windows):
            part = slice(first, first + self.chunk_windows)
            batch = np.zeros((len(lengths[part]), int(lengths[part].max())), dtype=np.float32)
            for row, (a, b) in enumerate(bounds[part]):
                batch[row, :b - a] = wave[a:b]
            out[part] = self.embedder.embed_batch(torch.from_numpy(batch),
                                                  torch.from_numpy(lengths[part]))
        return out


def score_folder(diarizer: Diarizer, folder: str | os.PathLike, collar: float = 0.25,
                 skip_overlap: bool = False, **call: Any) -> dict[str, Any]:
    """Diarize every recording of a conversation set and score it (:class:`DERScorer`).

    ``folder`` holds ``wav.scp`` and ``rttm/<key>.rttm`` (what ``make-conversations`` writes);
    ``call`` goes to the diarizer (``num_speakers``...). Returns :meth:`DERScorer.report` plus
    ``audio_seconds`` and ``wall_seconds``.
    """
    from pathlib import Path

    from r2n_audio.data.manifests import read_wav_scp
    from r2n_audio.diarization.der import DERScorer
    from r2n_audio.diarization.rttm import reference_turns

    start = time.perf_counter()
    scorer = DERScorer(collar=collar, skip_overlap=skip_overlap)
    audio = 0.0
    for key, path in read_wav_scp(Path(folder) / "wav.scp").items():
        reference = reference_turns(Path(folder) / "rttm", key)
        result = diarizer(path, reference=reference, uri=key, **call)
        scorer.add(key, reference, result, result.duration)
        audio += result.duration
    return {**scorer.report(), "audio_seconds": audio,
            "wall_seconds": time.perf_counter() - start}


def _waveform(audio: str | os.PathLike | np.ndarray | torch.Tensor, sample_rate: int
              ) -> np.ndarray:
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, sample_rate=sample_rate).numpy()
    wave = torch.as_tensor(audio, dtype=torch.float32).cpu().numpy()
    if wave.ndim != 1:
        raise R2NError(f"a waveform must be mono (N,), got shape {wave.shape}")
    return wave
