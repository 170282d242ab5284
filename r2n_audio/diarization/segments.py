"""From speech regions to windows, and from labelled windows back to speaker turns.

Sub-segmentation follows WeSpeaker and 3D-Speaker: windows of ``window`` seconds every ``hop``
seconds inside each speech region, the last one aligned with the region's end so every window
is full length; a region shorter than a window is one window, widened to ``min_window`` when it
is shorter than that (a 0.2 s blip gives no usable embedding on its own).

Back to a timeline: on a grid of ``step``-second frames, every window votes for its cluster
over its span with a triangular weight peaked at its centre, and each speech frame takes the
speaker with the most weight (with hop = window / 2 this gives each stretch to the nearer window
centre, 3D-Speaker's rule). Then runs shorter than ``min_duration`` that touch another speaker
are given to that neighbour, same-speaker turns separated by less than ``merge_gap`` are joined
(pauses inside a turn), and isolated turns shorter than ``min_duration`` are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Turn", "sliding_windows", "context_windows", "speech_mask", "vote", "frames_to_turns"]


class Turn(NamedTuple):
    """One speaker turn: ``start`` and ``end`` in seconds, ``speaker`` a label."""

    start: float
    end: float
    speaker: str


def sliding_windows(regions: Sequence[tuple[float, float]], window: float = 1.5,
                    hop: float = 0.75, min_window: float = 0.5,
                    duration: float | None = None) -> np.ndarray:
    """Windows (W, 2) ``[start, end]`` in seconds over speech ``regions`` (see module doc).

    Examples
    --------
    >>> sliding_windows([(0.0, 3.0), (5.0, 5.2)], duration=6.0).round(2).tolist()
    [[0.0, 1.5], [0.75, 2.25], [1.5, 3.0], [4.85, 5.35]]
    """
    if not 0 < hop <= window:
        raise ValueError(f"need 0 < hop <= window, got hop {hop}, window {window}")
    out: list[tuple[float, float]] = []
    for start, end in regions:
        length = end - start
        if length <= 0:
            continue
        if length <= window:
            width = max(min_window, length)
            lo = (start + end - width) / 2.0
            if duration is not None:  # keep a widened window inside the file
                lo = min(lo, duration - width)
            lo = max(0.0, lo)
            out.append((lo, lo + width if duration is None else min(duration, lo + width)))
            continue
        starts = np.arange(start, end - window, hop)
        out.extend((float(s), float(s) + window) for s in starts)
        out.append((end - window, end))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def context_windows(windows: np.ndarray, context: float, duration: float) -> np.ndarray:
    """Windows (W, 2) of ``context`` seconds centred on each of ``windows`` (W, 2), shifted to
    stay inside ``[0, duration]`` (the whole recording when it is shorter than ``context``).

    Examples
    --------
    >>> context_windows(np.array([[0.0, 1.5], [4.0, 5.5], [8.5, 10.0]]), 3.0, 10.0).tolist()
    [[0.0, 3.0], [3.25, 6.25], [7.0, 10.0]]
    """
    width = min(context, duration)
    centre = np.asarray(windows, dtype=np.float64).reshape(-1, 2).mean(axis=1)
    start = np.clip(centre - width / 2.0, 0.0, duration - width)
    return np.stack([start, start + width], axis=1)


def speech_mask(regions: Sequence[tuple[float, float]], n_frames: int, step: float) -> np.ndarray:
    """Boolean (T,): frame ``t`` (centred at ``(t + 0.5) * step``) lies in a region."""
    mask = np.zeros(n_frames, dtype=bool)
    for start, end in regions:
        mask[int(round(start / step)):int(round(end / step))] = True
    return mask


def vote(windows: np.ndarray, labels: np.ndarray, mask: np.ndarray, step: float) -> np.ndarray:
    """Per-frame speaker index (T,) from labelled windows; -1 outside ``mask``.

    Parameters
    ----------
    windows : (W, 2) np.ndarray
        Window spans in seconds.
    labels : (W,) np.ndarray of int
        Cluster of each window (0..K-1).
    mask : (T,) np.ndarray of bool
        Speech frames.
    step : float
        Frame step in seconds.
    """
    n_frames = len(mask)
    n_speakers = int(labels.max()) + 1 if len(labels) else 0
    scores = np.zeros((n_frames, max(n_speakers, 1)))
    for (start, end), label in zip(windows, labels):
        a, b = int(round(start / step)), min(n_frames, int(round(end / step)))
        if b <= a:
            continue
        centre, half = (a + b) / 2.0, (b - a) / 2.0 + 1.0
        scores[a:b, label] += 1.0 - np.abs(np.arange(a, b) + 0.5 - centre) / half
    frames = np.where(scores.any(axis=1), scores.argmax(axis=1), -1)
    frames[~mask] = -1
    return frames


def _runs(frames: np.ndarray) -> list[list[int]]:
    """Run-length encoding of (T,) ints: ``[[label, start, end), ...]``."""
    if len(frames) == 0:
        return []
    edges = np.flatnonzero(np.diff(frames)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(frames)]])
    return [[int(frames[s]), int(s), int(e)] for s, e in zip(starts, ends)]


def _absorb_short_runs(frames: np.ndarray, min_frames: int) -> np.ndarray:
    """Give speaker runs shorter than ``min_frames`` that touch another speaker to it."""
    frames = frames.copy()
    runs = _runs(frames)
    for i, (label, start, end) in enumerate(runs):
        if label < 0 or end - start >= min_frames:
            continue
        neighbours = [runs[j] for j in (i - 1, i + 1)
                      if 0 <= j < len(runs) and runs[j][0] >= 0 and runs[j][0] != label]
        if neighbours:
            best = max(neighbours, key=lambda r: r[2] - r[1])
            frames[start:end] = best[0]
            runs[i][0] = best[0]
    return frames


def frames_to_turns(frames: np.ndarray, step: float, names: Sequence[str],
                    min_duration: float = 0.25, merge_gap: float = 0.5) -> list[Turn]:
    """Turns from per-frame speaker indices (T,) (-1 = no speech); see the module doc.

    Examples
    --------
    >>> f = np.array([0] * 50 + [1] * 5 + [0] * 50 + [-1] * 20 + [0] * 30)
    >>> frames_to_turns(f, 0.01, ["A", "B"])
    [Turn(start=0.0, end=1.55, speaker='A')]
    """
    frames = _absorb_short_runs(np.asarray(frames), int(round(min_duration / step)))
    turns: list[list] = []
    for label, start, end in _runs(frames):
        if label < 0:
            continue
        if turns and turns[-1][2] == label and (start - turns[-1][1]) * step < merge_gap:
            turns[-1][1] = end
        else:
            turns.append([start, end, label])
    return [Turn(round(s * step, 3), round(e * step, 3), names[k]) for s, e, k in turns
            if (e - s) * step >= min_duration]
