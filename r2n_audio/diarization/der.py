"""Diarization error rate through ``pyannote.metrics`` (the reference implementation).

``DER = (missed speech + false alarm + speaker confusion) / reference speech``, after the
optimal one-to-one mapping of hypothesis to reference speakers (Hungarian algorithm), each term
in seconds. Conventions stated the way NIST's md-eval and dscore state them:

- ``collar`` is the margin **on each side** of every reference boundary that is not scored
  (default 0.25 s, md-eval's ``-c 0.25``); pyannote.metrics' own ``collar`` argument is the
  whole width, so it receives ``2 * collar``.
- Overlapped speech is scored by default (``skip_overlap=False``); with ``skip_overlap=True``
  regions where the reference has two or more speakers are left out.
- The scored region is the whole recording (``0 .. duration``) when the duration is known.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from r2n_audio.diarization.segments import Turn
from r2n_audio.errors import R2NError

__all__ = ["to_annotation", "DERScorer"]

_COMPONENTS = {"missed": "missed detection", "false_alarm": "false alarm",
               "confusion": "confusion", "speech": "total"}


def _pyannote():
    try:
        from pyannote.core import Annotation, Segment, Timeline
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        raise R2NError("scoring against a reference needs pyannote.metrics "
                       "(pip install pyannote.metrics)") from None
    return Annotation, Segment, Timeline, DiarizationErrorRate


def to_annotation(turns: Iterable[Turn], uri: str = "audio"):
    """A ``pyannote.core.Annotation`` of ``turns`` (one track per turn)."""
    Annotation, Segment, _, _ = _pyannote()
    annotation = Annotation(uri=uri)
    for i, (start, end, speaker) in enumerate(turns):
        if end > start:
            annotation[Segment(start, end), i] = speaker
    return annotation


class DERScorer:
    """Per-recording and overall DER with its components.

    Parameters
    ----------
    collar : float
        Seconds left unscored on each side of every reference boundary (default 0.25).
    skip_overlap : bool
        Leave out regions where the reference has overlapping speakers (default: scored).

    Examples
    --------
    >>> scorer = DERScorer(collar=0.0)
    >>> scorer.add("a", [Turn(0, 10, "x")], [Turn(0, 8, "1"), Turn(8, 10, "2")])["der"]
    0.2
    """

    def __init__(self, collar: float = 0.25, skip_overlap: bool = False) -> None:
        if not collar >= 0:
            raise R2NError(f"the collar must be >= 0 seconds, got {collar}")
        *_, DiarizationErrorRate = _pyannote()
        self.collar, self.skip_overlap = float(collar), bool(skip_overlap)
        self.metric = DiarizationErrorRate(collar=2.0 * collar, skip_overlap=skip_overlap)
        self.files: dict[str, dict[str, float]] = {}

    def add(self, key: str, reference: Iterable[Turn], hypothesis: Iterable[Turn],
            duration: float | None = None) -> dict[str, float]:
        """Score one recording; returns its ``der``, ``missed``, ``false_alarm``, ``confusion``
        (fractions of its reference speech) and ``speech`` (scored reference seconds)."""
        _, Segment, Timeline, _ = _pyannote()
        reference, hypothesis = list(reference), list(hypothesis)
        if duration is None:
            duration = max([t.end for t in reference + hypothesis], default=0.0)
        uem = Timeline([Segment(0.0, max(duration, 1e-3))], uri=key)
        detail = self.metric(to_annotation(reference, key), to_annotation(hypothesis, key),
                             uem=uem, detailed=True)
        self.files[key] = _summary(detail)
        return self.files[key]

    def total(self) -> dict[str, float]:
        """The same fields over every recording added (seconds summed before dividing)."""
        return _summary(self.metric.accumulated_)

    def report(self) -> dict[str, Any]:
        """``{"collar": ..., "skip_overlap": ..., "files": {key: {...}}, "total": {...}}``."""
        return {"collar": self.collar, "skip_overlap": self.skip_overlap,
                "files": dict(self.files), "total": self.total()}


def _summary(components: dict) -> dict[str, float]:
    speech = float(components.get("total", 0.0))
    seconds = {name: float(components.get(key, 0.0)) for name, key in _COMPONENTS.items()}
    errors = seconds["missed"] + seconds["false_alarm"] + seconds["confusion"]
    out = {name: (value / speech if speech > 0 else 0.0) for name, value in seconds.items()
           if name != "speech"}
    # No reference speech: any hypothesised speech is all error (DER 1), none is perfect (0).
    out["der"] = errors / speech if speech > 0 else float(errors > 0)
    out["speech"] = speech
    return out
