"""Sliding windows of one recording embedded from shared frame-level features.

Diarization embeds windows of 1.5 s every 0.75 s: cut out and embedded one by one, every frame
goes through the front-end and the network twice. Here the front-end and the network's trunk
(``model.forward_frames``) run once over each stretch of overlapping windows, and each window is
the model's own pooling and embedding head (``model.forward_pooled``) applied to its span of the
trunk's frame-level map. :meth:`r2n_audio.inference.embedder.Embedder.embed_windows` is the
public entry point; this module plans the stretches and does the index arithmetic. A model
may also offer ``shared_pooling(frame_map)``, the per-frame part of its pooling (ECAPA's
attention projection), computed once per map and sliced with it: 3 s context windows cover
every frame four times, so this cut the embedding time of ``diarize``'s defaults by 12-16 %.

How the result differs from embedding each window alone
-------------------------------------------------------
- Mean normalisation (CMN): alone, a window's features have their own mean subtracted. Shared
  features cannot (the trunk is not linear), so either each frame has the mean of the
  window-length stretch centred on it subtracted (``cmn="sliding"``, Kaldi's
  ``apply-cmvn-sliding --center``: the frames of a window get nearly its own mean) or every
  frame the block's mean (``cmn="block"``). This is the main difference: for the demo ECAPA
  on pyannote's sample (``benchmarks/bench_diarize.py --part frames``) the median cosine to
  the per-window embeddings is 0.95 sliding, 0.84 block, while trunk context alone (windows
  of the block-normalised features embedded one by one) leaves 0.998.
- A convolutional trunk sees real neighbours at a window's edges instead of padding; with a
  trunk that has global context (ECAPA's squeeze-excitation averages, CAM++'s segment
  pooling) every frame also depends on the whole block.
- Digital silence: the Kaldi front-end drops silent frames (see
  :mod:`r2n_audio.features.silence`), which shortens the time axis. Here it drops them too and
  window bounds are mapped through the running count of kept frames, rather than keeping the
  axis intact: a region from ``--vad none`` or the energy VAD can hold digital silence, which
  kept would weigh on the normalisation and the pooling as it never does for a window alone,
  and a window that is its whole block stays exactly :meth:`Embedder.embed_batch`'s.
- A window equal to its whole block is computed exactly as :meth:`Embedder.embed_batch`
  computes it (same front-end input, same trunk input, pooling over every frame), with
  ``cmn="block"``, or with ``cmn="sliding"`` when the block is at most a window long (the
  centred stretch then covers it all): the common case of a speech region of one window.

Blocks
------
Windows that overlap form a *span* (one speech region, in diarization). A span up to
``block + 2 * margin`` long is one block; a longer one is cut into cores of ``block`` seconds,
each window goes to the core holding its centre, and each block runs from ``margin`` before
its first window to ``margin`` after its last, so no window's trunk features are computed
within ``margin`` of an artificial block edge. Memory is bounded by the block length, whatever
the recording length.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from r2n_audio.data.bucketing import duration_batches, similar_length_runs
from r2n_audio.errors import ModelError
from r2n_audio.features.silence import has_signal

__all__ = ["Block", "plan_blocks", "frame_shift", "kept_frames", "sliding_cmn", "window_frames",
           "pool_windows", "embed_blocks", "embed_recording", "nonfinite_windows",
           "release_freed_memory",
           "CMN_MODES", "OK", "NO_SIGNAL", "TOO_SHORT"]

CMN_MODES = ("sliding", "block")

try:
    _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _MALLOC_TRIM = None


class Block(NamedTuple):
    """One stretch of waveform the front-end and trunk see whole."""

    start: int
    """First sample."""
    end: int
    """One past the last sample."""
    windows: np.ndarray
    """(K,) int64: indices of the windows embedded from it."""


def plan_blocks(bounds: np.ndarray, block: int, margin: int, grid: int = 1) -> list[Block]:
    """Group windows ``bounds (W, 2)`` (samples, ``[start, end)``) into blocks (module doc).

    A block cut from a longer span starts a multiple of ``grid`` samples after the span (pass
    the trunk's stride in samples): its strided frames then fall where the span's would.

    Examples
    --------
    >>> b = np.array([[0, 150], [75, 225], [150, 300], [400, 450]])
    >>> [(k.start, k.end, k.windows.tolist()) for k in plan_blocks(b, 1000, 10)]
    [(0, 300, [0, 1, 2]), (400, 450, [3])]
    >>> [(k.start, k.end, k.windows.tolist()) for k in plan_blocks(b[:3], 100, 10)]
    [(0, 160, [0]), (65, 235, [1]), (140, 300, [2])]
    """
    blocks: list[Block] = []
    order = np.argsort(bounds[:, 0], kind="stable")
    first = 0
    while first < len(order):
        last, end = first + 1, int(bounds[order[first], 1])
        while last < len(order) and bounds[order[last], 0] < end:  # overlapping: same span
            end = max(end, int(bounds[order[last], 1]))
            last += 1
        blocks.extend(_cut_span(bounds, order[first:last], end, block, margin, grid))
        first = last
    return blocks


def _cut_span(bounds: np.ndarray, ids: np.ndarray, end: int, block: int, margin: int,
              grid: int) -> Iterator[Block]:
    """Blocks of one span of overlapping windows ``ids`` that ends at sample ``end``."""
    start = int(bounds[ids, 0].min())
    if end - start <= block + 2 * margin:
        yield Block(start, end, np.sort(ids))
        return
    core = (bounds[ids].sum(1) // 2 - start) // block  # the core holding each window's centre
    for k in np.unique(core):
        mine = np.sort(ids[core == k])
        first = max(start, int(bounds[mine, 0].min()) - margin)
        yield Block(start + (first - start) // grid * grid,
                    min(end, int(bounds[mine, 1].max()) + margin), mine)


def frame_shift(frontend: torch.nn.Module) -> int:
    """Samples between two frames of a front-end (Kaldi ``Frontend`` or SpeechBrain's)."""
    fbank = getattr(frontend, "fbank", frontend)
    for name in ("window_shift", "hop"):
        if isinstance(getattr(fbank, name, None), int):
            return int(getattr(fbank, name))
    raise ModelError(f"cannot embed windows from shared frames with a {type(frontend).__name__} "
                     f"front-end (no frame shift known); use per-window embedding")


def kept_frames(frontend: torch.nn.Module, waves: torch.Tensor, lengths: torch.Tensor,
                frames: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Which frames the front-end keeps, when it drops digital silence (the Kaldi
    :class:`~r2n_audio.features.frontend.Frontend` in eval mode), else None (all kept).

    Returns ``keep (B, T)`` bool and the frame counts before dropping ``(B,)``. The same test
    as the front-end's own (``fbank.frame_rms >= silence_rms``), so the kept frames' positions
    map window bounds onto its compacted time axis.
    """
    threshold = float(getattr(frontend, "silence_rms", 0.0))
    if threshold <= 0.0 or frontend.training:
        return None
    raw = frontend.fbank.num_frames(lengths)
    valid = torch.arange(frames, device=waves.device) < raw.unsqueeze(1)
    return (frontend.fbank.frame_rms(waves, lengths, frames) >= threshold) & valid, raw


def sliding_cmn(feats: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Subtract from each frame the mean of the ``width`` frames centred on it, the stretch
    shifted to stay inside the utterance (all of it when shorter): Kaldi's
    ``apply-cmvn-sliding --center=true`` (torchaudio's ``sliding_window_cmn(center=True)``).

    Shapes: ``feats (B, T, F)``, ``lengths (B,)`` valid frames -> ``(B, T, F)``, padded frames 0.
    Any constant per utterance (a mean already removed) cancels out.
    """
    batch, frames, dim = feats.shape
    total = F.pad(feats.double().cumsum(1), (0, 0, 1, 0))  # total[:, t] = sum of frames < t
    t = torch.arange(frames, device=feats.device).unsqueeze(0)
    n = lengths.to(feats.device).unsqueeze(1)
    hi = (t - width // 2).clamp(min=0).add(width).minimum(n)
    lo = (hi - width).clamp(min=0)
    gather = lambda index: total.gather(1, index.unsqueeze(2).expand(-1, -1, dim))  # noqa: E731
    mean = (gather(hi) - gather(lo)) / (hi - lo).clamp(min=1).unsqueeze(2)
    return (feats - mean.to(feats.dtype)) * (t < n).unsqueeze(2).to(feats.dtype)


def _removes_mean(frontend: torch.nn.Module) -> bool:
    """Whether the front-end subtracts each utterance's mean (Kaldi ``cmn``, SpeechBrain's
    ``mean_norm``): only then is a sliding mean the stand-in for a window's own."""
    return getattr(frontend, "cmn", None) is not None or bool(getattr(frontend, "mean_norm", False))


def window_frames(starts: np.ndarray, ends: np.ndarray, shift: int, block_samples: int,
                  raw_frames: int, kept: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Feature-frame spans ``[a, b)`` of windows in one block, on the front-end's output axis.

    Parameters
    ----------
    starts, ends : (K,) np.ndarray
        Window bounds in samples from the block's start.
    shift : int
        Samples between frames.
    block_samples, raw_frames : int
        The block's length, and the frames the front-end makes of it before dropping silence.
    kept : (raw_frames,) np.ndarray of bool, optional
        The frames the front-end kept (None: all).

    A window gets the frames that start at or after its start (``ceil(start / shift)``) and,
    counting from the block's end, end by its end (``raw_frames - ceil((block_samples - end) /
    shift)``): the frames it makes alone when its bounds fall on the frame grid, whatever the
    front-end's framing (Kaldi's frames end a window length after their start, centred ones
    half of one). Silence the front-end dropped is mapped through the running count of kept
    frames (it moves kept frames to the front, in order).
    """
    a = np.minimum(-(-starts // shift), raw_frames)
    b = np.clip(raw_frames + (ends - block_samples) // shift, a, raw_frames)
    if kept is None:
        return a, b
    count = np.concatenate([[0], np.cumsum(kept)])
    return count[a], count[b]


def pool_windows(model: torch.nn.Module, frame_map: torch.Tensor, rows: np.ndarray,
                 a: np.ndarray, b: np.ndarray, shared: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Embeddings (K, D) of windows from a trunk's frame-level map.

    Parameters
    ----------
    model : nn.Module
        Has ``frame_stride`` and ``forward_pooled``.
    frame_map : (B, C, [F',] T') torch.Tensor
        ``model.forward_frames`` of a batch of blocks.
    rows : (K,) np.ndarray
        Block (row of ``frame_map``) of each window.
    a, b : (K,) np.ndarray
        Each window's feature-frame span ``[a, b)`` (``b > a``).
    shared : (B, A, T') torch.Tensor, optional
        ``model.shared_pooling(frame_map)``, where the model has it: its spans go to
        ``forward_pooled`` with the map's.

    Map frame ``j`` of a stride-``s`` trunk covers feature frames ``[j s, (j + 1) s)`` (the
    trunks pad "same" and round up: ``T' = ceil(T / s)``), so a window pools the map frames
    that cover any of its own, ``[floor(a / s), ceil(b / s))``: a window equal to its whole
    block pools the whole map, as ``forward`` does.
    """
    stride = int(model.frame_stride)
    lo, hi = a // stride, -(-b // stride)
    width = int((hi - lo).max())
    maps = [frame_map] if shared is None else [frame_map, shared]
    picked = [m.new_zeros(len(rows), *m.shape[1:-1], width) for m in maps]
    for k, (row, first, last) in enumerate(zip(rows.tolist(), lo.tolist(), hi.tolist())):
        for out, m in zip(picked, maps):
            out[k, ..., : last - first] = m[row, ..., first:last]
    lengths = torch.as_tensor(hi - lo, device=frame_map.device)
    if shared is None:
        return model.forward_pooled(picked[0], lengths)
    return model.forward_pooled(picked[0], lengths, picked[1])


OK, NO_SIGNAL, TOO_SHORT = 0, 1, 2
"""Window outcomes of :func:`embed_blocks`: an embedding; no frame of signal; fewer kept
frames than the model's shortest input."""


@torch.inference_mode()
def embed_blocks(frontend: torch.nn.Module, model: torch.nn.Module, wave: torch.Tensor,
                 blocks: list[Block], bounds: np.ndarray, precision: str = "fp32",
                 cmn: str = "sliding", pool_batch: int = 16
                 ) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """Raw network outputs of the windows of a batch of blocks (front-end and trunk once each).

    Parameters
    ----------
    frontend, model : nn.Module
        On the same device; ``model`` has ``forward_frames``, ``forward_pooled`` and
        ``frame_stride``.
    wave : (N,) torch.Tensor
        The recording (finite samples).
    blocks : list of Block
    bounds : (W, 2) np.ndarray
        All windows' ``[start, end)`` in samples.
    precision : {"fp32", "bf16"}
        Network arithmetic (the front-end is float32).
    cmn : {"sliding", "block"}
        Mean normalisation over the longest window's length centred on each frame, or over
        the block (see the module doc); only when the front-end normalises means at all.
    pool_batch : int
        Windows pooled at once (bounds the copies of their map spans).

    Returns
    -------
    ids : (K,) np.ndarray
        The windows of these blocks.
    raw : (K, D) torch.Tensor
        Their network outputs, on the CPU, float32 (0 where not OK).
    status : (K,) np.ndarray
        :data:`OK`, :data:`NO_SIGNAL` or :data:`TOO_SHORT` per window.
    """
    device = next(model.parameters()).device
    lengths = torch.tensor([blk.end - blk.start for blk in blocks])
    batch = torch.zeros(len(blocks), int(lengths.max()))
    for row, blk in enumerate(blocks):
        batch[row, : blk.end - blk.start] = wave[blk.start:blk.end]
    batch, lengths = batch.to(device), lengths.to(device)
    feats, frame_lengths = frontend(batch, lengths)
    kept = kept_frames(frontend, batch, lengths, feats.shape[1])
    raw_frames = (frame_lengths if kept is None else kept[1]).cpu().numpy()
    keep = None if kept is None else kept[0].cpu().numpy()
    shift = frame_shift(frontend)
    if cmn == "sliding" and _removes_mean(frontend):
        width = int(round(int((bounds[:, 1] - bounds[:, 0]).max()) / shift))
        feats = sliding_cmn(feats, frame_lengths, width)
    ids, rows, spans = [], [], []
    for row, blk in enumerate(blocks):
        starts, ends = bounds[blk.windows, 0] - blk.start, bounds[blk.windows, 1] - blk.start
        spans.append(window_frames(starts, ends, shift, blk.end - blk.start,
                                   int(raw_frames[row]), None if keep is None else keep[row]))
        ids.append(blk.windows)
        rows.append(np.full(len(blk.windows), row))
    ids, rows = np.concatenate(ids), np.concatenate(rows)
    a, b = np.concatenate([s[0] for s in spans]), np.concatenate([s[1] for s in spans])
    status = np.where(b - a >= int(getattr(model, "min_frames", 1)), OK, TOO_SHORT)
    status[b == a] = NO_SIGNAL
    if kept is None:  # a front-end that keeps silence: ask the samples, as embed_batch does
        status[~_has_signal(wave, bounds[ids])] = NO_SIGNAL
    raw = torch.zeros(len(ids), int(model.embed_dim))
    if not (status == OK).any():
        return ids, raw, status
    # Windows need fewer frames than their block has, so a block with none OK is left out.
    used = np.unique(rows[status == OK])
    width = int(frame_lengths[used].max())
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        frame_map = model.forward_frames(feats[used, :width], frame_lengths[used])
        # Per-frame pooling work done once per map, not once per window covering the frame.
        shared = model.shared_pooling(frame_map) if hasattr(model, "shared_pooling") else None
        where = np.searchsorted(used, rows)
        good = np.flatnonzero(status == OK)
        for first in range(0, len(good), pool_batch):
            part = good[first:first + pool_batch]
            raw[part] = pool_windows(model, frame_map, where[part], a[part], b[part],
                                     shared).float().cpu()
    return ids, raw, status


def embed_recording(frontend: torch.nn.Module, model: torch.nn.Module, wave: torch.Tensor,
                    bounds: np.ndarray, block: int, margin: int, budget: float,
                    embed_dim: int, precision: str = "fp32", cmn: str = "sliding"
                    ) -> tuple[torch.Tensor, np.ndarray]:
    """Raw embeddings (W, D) and outcomes (W,) (``OK``...) of every window of one recording.

    ``bounds`` (W, 2) are window sample spans of ``wave`` (N,); the windows are planned into
    blocks (:func:`plan_blocks`, ``block`` and ``margin`` in samples), and blocks of similar
    length are batched within ``budget`` padded samples through :func:`embed_blocks`.
    """
    blocks = plan_blocks(bounds, block, margin, int(model.frame_stride) * frame_shift(frontend))
    raw = torch.zeros(len(bounds), embed_dim)
    status = np.full(len(bounds), OK)
    sizes = [blk.end - blk.start for blk in blocks]
    for run in similar_length_runs(sorted(range(len(blocks)), key=sizes.__getitem__), sizes):
        for batch in duration_batches(run, sizes, budget):
            ids, raw[ids], status[ids] = embed_blocks(frontend, model, wave,
                                                      [blocks[i] for i in batch], bounds,
                                                      precision, cmn)
            release_freed_memory()
    return raw, status


def nonfinite_windows(wave: torch.Tensor, bounds: np.ndarray) -> dict[int, str]:
    """``{window: why}`` for windows ``bounds (W, 2)`` of ``wave (N,)`` with NaN/Inf samples."""
    if math.isfinite(float(wave.sum())):  # NaN/Inf propagate; no N-long temporaries
        return {}
    bad = torch.nonzero(~torch.isfinite(wave)).flatten().numpy()
    hits = np.searchsorted(bad, bounds[:, 1]) > np.searchsorted(bad, bounds[:, 0])
    return {i: "contains NaN or Inf samples" for i in np.flatnonzero(hits).tolist()}


def release_freed_memory() -> None:
    """Return the C heap's free memory to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    Blocks have every length, and glibc keeps freed tensors of the middle sizes (up to 32 MB)
    in its heap, fragmented: measured on an hour of audio with 3 s context windows (60 s
    blocks, ECAPA C=512), peak RSS grew ~50 MB with each new block to 2.2 GB; trimmed after
    each batch it stays at 1.2 GB, for no measurable time.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _has_signal(wave: torch.Tensor, bounds: np.ndarray) -> np.ndarray:
    """(K,) bool: windows ``bounds (K, 2)`` of ``wave (N,)`` with a frame of signal."""
    return np.array([has_signal(wave[s:e]) for s, e in bounds.tolist()], dtype=bool)
