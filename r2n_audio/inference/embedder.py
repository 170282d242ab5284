"""The Python API from audio to speaker embeddings: :class:`Embedder`.

>>> emb = Embedder.from_pretrained("model.pt")                      # doctest: +SKIP
>>> a, b = emb.embed_files(["a.wav", "b.wav"])                      # doctest: +SKIP
>>> emb.similarity("a.wav", "b.wav")                  # the cosine   # doctest: +SKIP
>>> emb.verify("a.wav", "b.wav").same      # the bundle's threshold  # doctest: +SKIP

How embeddings are made
-----------------------
1. Audio is decoded by :func:`r2n_audio.audio.load_audio` (mono, resampled).
2. An utterance longer than ``window_seconds`` is cut into windows of that length overlapping by
   ``overlap_seconds`` (the last window is aligned with the end, so every window is full
   length); each window is one *segment*. Shorter utterances are one segment.
3. Segments are sorted by length and grouped into batches of lengths within 10 % of each other
   (little padding) whose total padded duration stays under ``batch_seconds``; the front-end
   and the network run once per batch (the front-end always in float32; the network under
   CPU/CUDA bf16 autocast with ``precision="bf16"``).
4. An utterance's embedding is the mean of its segments' raw network outputs, then the bundle's
   embedding normalisation (mean subtraction, optional L2) is applied.

Nothing that is not a speaker becomes an embedding: an utterance with no signal (see
:mod:`r2n_audio.features.silence`: zeros, DC, +-1-step dither), one left with too few frames
once the front-end drops digital silence, NaN/Inf samples, or a non-finite network output is an
:class:`AudioError` (a failed file in :meth:`Embedder.iter_files`), never a vector.

Memory is bounded by ``batch_seconds`` and ``window_seconds`` whatever the file length (an hour
of 16 kHz audio is 230 MB of samples; the network only ever sees one batch). Front-end and
network are both lengths-aware, so an utterance's embedding does not depend on what else is in
its batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from r2n_audio.audio import audio_duration, load_audio
from r2n_audio.data.bucketing import duration_batches, similar_length_runs
from r2n_audio.errors import AudioError, ModelError
from r2n_audio.features.frontend import build_frontend
from r2n_audio.features.silence import SILENCE_RMS, has_signal
from r2n_audio.inference.bundle import build_model, load_bundle, load_weights_strict
from r2n_audio.inference.shared_frames import (CMN_MODES, NO_SIGNAL, OK, embed_recording,
                                               nonfinite_windows)
from r2n_audio.scoring.decision import Decision, cosine_similarity, decide

__all__ = ["Embedder", "FileResult", "build_model", "load_weights_strict", "resolve_device"]

PRECISIONS = ("fp32", "bf16")
_NO_SIGNAL = (f"no signal: every 25 ms frame is below {SILENCE_RMS * 32768:g} 16-bit steps RMS "
              f"(about -84 dBFS) after removing its mean (silence or a constant offset)")
_TOO_LITTLE = ("too little signal: under the model's shortest input once digital silence is "
               "dropped")
_NONFINITE_OUTPUT = "the model's output is NaN or Inf (a broken or overflowing model)"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but no CUDA device is available; use "
                         "--device cpu or auto")
    return dev


class FileResult(NamedTuple):
    """One file's outcome from :meth:`Embedder.iter_files`."""

    index: int
    """Position in the ``paths`` given."""
    embedding: np.ndarray | None
    """(D,) float32, or ``None`` when the file failed."""
    error: AudioError | None
    """Why the file failed (path and reason), or ``None``."""
    seconds: float
    """Decoded duration (0 for a failed file)."""


class Embedder:
    """Front-end + network + embedding normalisation, ready to embed audio.

    Parameters
    ----------
    model : nn.Module
        A speaker backbone: ``forward(feats (B, T, F), lengths (B,)) -> (B, D)``.
    frontend : nn.Module
        ``forward(waveforms (B, N), lengths (B,)) -> (feats, frame_lengths)``.
    sample_rate : int
        Rate the front-end expects.
    embedding_mean : (D,) torch.Tensor, optional
        Subtracted from every embedding (SpeechBrain's ``mean_var_norm_emb``).
    l2_normalize : bool
        Scale embeddings to unit length after the mean subtraction.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    precision : {"fp32", "bf16"}
        Network arithmetic (autocast); the front-end is always float32.
    window_seconds, overlap_seconds : float
        Long utterances are embedded as overlapping windows of this length (see module doc).
    batch_seconds : float
        Default bound on the padded audio duration of one batch.
    """

    def __init__(self, model: nn.Module, frontend: nn.Module, sample_rate: int = 16000,
                 embedding_mean: torch.Tensor | None = None, l2_normalize: bool = False,
                 device: str | torch.device = "auto", precision: str = "fp32",
                 window_seconds: float = 20.0, overlap_seconds: float = 2.0,
                 batch_seconds: float = 60.0) -> None:
        if precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not 0 <= overlap_seconds < window_seconds:
            raise ModelError("overlap_seconds must be in [0, window_seconds)")
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.frontend = frontend.eval().to(self.device)
        self.sample_rate = int(sample_rate)
        self.embedding_mean = None if embedding_mean is None else embedding_mean.float().to(self.device)
        self.l2_normalize = bool(l2_normalize)
        self.precision = precision
        self.window = int(round(window_seconds * self.sample_rate))
        self.hop = self.window - int(round(overlap_seconds * self.sample_rate))
        self.batch_seconds = float(batch_seconds)
        self.meta: dict[str, Any] = {}
        """The bundle's ``meta`` (training data, results, ``threshold``...) when loaded from one."""

    @classmethod
    def from_pretrained(cls, path_or_bundle: str | os.PathLike | dict[str, Any],
                        device: str | torch.device = "auto", **kwargs: Any) -> "Embedder":
        """Build from a bundle file (see :mod:`r2n_audio.inference.bundle`) or a bundle dict.

        ``kwargs`` go to the constructor (``precision``, ``window_seconds``, ``batch_seconds``...).

        Raises
        ------
        ModelError
            Missing or unsafe file, not a bundle, unknown model, weights that do not fit.
        """
        if isinstance(path_or_bundle, dict):
            bundle, source = path_or_bundle, "bundle"
        else:
            bundle, source = _load_bundle(path_or_bundle), str(path_or_bundle)
        model = build_model(bundle, source)
        frontend = build_frontend(bundle["frontend"])
        norm = bundle.get("embedding_norm") or {}
        embedder = cls(model, frontend, sample_rate=bundle["sample_rate"],
                       embedding_mean=norm.get("mean"), l2_normalize=norm.get("l2", False),
                       device=device, **kwargs)
        embedder.meta = dict(bundle.get("meta") or {})
        return embedder

    @property
    def embed_dim(self) -> int:
        """Embedding dimension D."""
        return int(self.model.embed_dim)

    # ------------------------------------------------------------------ core
    def _segments(self, wave: torch.Tensor) -> list[torch.Tensor]:
        """Cut one waveform (N,) into full-length overlapping windows (or keep it whole)."""
        n = wave.shape[0]
        if n <= self.window:
            return [wave]
        starts = list(range(0, n - self.window, self.hop)) + [n - self.window]
        return [wave[s:s + self.window] for s in starts]

    @torch.inference_mode()
    def _forward(self, waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw network outputs (S, D) for segments of at most ``window`` samples, one batch,
        and which segments (S,) had enough frames left after the front-end dropped silence
        (the others' rows are 0 and the network never sees them)."""
        lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.long)
        batch = torch.zeros(len(waves), int(lengths.max()))
        for i, w in enumerate(waves):
            batch[i, : w.shape[0]] = w
        batch, lengths = batch.to(self.device), lengths.to(self.device)
        feats, frame_lengths = self.frontend(batch, lengths)
        usable = frame_lengths >= int(getattr(self.model, "min_frames", 1))
        out = torch.zeros(len(waves), self.embed_dim)
        if not bool(usable.any()):
            return out, usable.cpu()
        if not bool(usable.all()):
            feats, frame_lengths = feats[usable], frame_lengths[usable]
        feats = feats[:, :int(frame_lengths.max())]  # frames past every length: dropped silence
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            out[usable.cpu()] = self.model(feats, frame_lengths).float().cpu()
        return out, usable.cpu()

    def _embed_waves(self, waves: Sequence[torch.Tensor], batch_seconds: float
                     ) -> tuple[torch.Tensor, dict[int, str]]:
        """Embeddings (U, D) of whole utterances: segment, batch by duration, pool, normalise.

        Returns the embeddings and ``{utterance: problem}`` for utterances without one (their
        rows are 0): no signal, too little signal once silence is dropped, or a non-finite
        network output. Nothing non-finite is ever returned.
        """
        problems = {u: _NO_SIGNAL for u, wave in enumerate(waves) if not has_signal(wave)}
        owner, segments = [], []
        for u, wave in enumerate(waves):
            for seg in self._segments(wave) if u not in problems else ():
                owner.append(u)
                segments.append(seg)
        order = sorted(range(len(segments)), key=lambda i: segments[i].shape[0])
        raw = torch.zeros(len(segments), self.embed_dim)
        usable = torch.zeros(len(segments), dtype=torch.bool)
        sizes = [s.shape[0] for s in segments]
        for run in similar_length_runs(order, sizes):
            for batch in duration_batches(run, sizes, batch_seconds * self.sample_rate):
                raw[batch], usable[batch] = self._forward([segments[i] for i in batch])
        owners = torch.tensor(owner, dtype=torch.long)
        finite = torch.isfinite(raw).all(1)
        for u in owners[~finite].unique().tolist():
            problems[u] = _NONFINITE_OUTPUT
        good = usable & finite
        pooled = torch.zeros(len(waves), self.embed_dim).index_add_(
            0, owners[good], raw[good])
        counts = torch.bincount(owners[good], minlength=len(waves))
        for u in torch.nonzero(counts == 0).flatten().tolist():
            problems.setdefault(u, _TOO_LITTLE)
        pooled /= counts.clamp(min=1).unsqueeze(1).float()
        emb = self._normalise(pooled)
        emb[list(problems)] = 0.0
        return emb, problems

    def _normalise(self, emb: torch.Tensor) -> torch.Tensor:
        if self.embedding_mean is not None:
            emb = emb - self.embedding_mean.cpu()
        if self.l2_normalize:
            emb = torch.nn.functional.normalize(emb, dim=1)
        return emb

    # ------------------------------------------------------------------ public API
    def embed_batch(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None,
                    batch_seconds: float | None = None, return_valid: bool = False
                    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Embed a padded batch of waveforms.

        Parameters
        ----------
        waveforms : (B, N) torch.Tensor or np.ndarray
            Float waveforms in [-1, 1] at ``sample_rate``.
        lengths : (B,) torch.Tensor, optional
            Valid samples per row (``None``: all ``N``).
        batch_seconds : float, optional
            Bound on padded audio per network batch (default: the embedder's).
        return_valid : bool
            Return ``(embeddings, valid (B,) bool)`` instead of raising for rows that have no
            embedding (rows of silence, NaN/Inf samples, a non-finite network output); their
            rows are 0. Useful for windows of a recording (diarization).

        Returns
        -------
        embeddings : (B, D) np.ndarray, float32
            Always finite.

        Raises
        ------
        AudioError
            Without ``return_valid``: a row has NaN/Inf samples or no signal (see
            :mod:`r2n_audio.features.silence`), or the network output for it is not finite;
            the message names the first such row (``waveform i``) and how many there are.
        """
        waveforms = torch.as_tensor(waveforms, dtype=torch.float32).cpu()
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (B, N), got shape {tuple(waveforms.shape)}")
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1])
        waves = [waveforms[i, : int(n)] for i, n in enumerate(torch.as_tensor(lengths))]
        nonfinite = {i: "contains NaN or Inf samples" for i, w in enumerate(waves)
                     if not bool(torch.isfinite(w).all())}
        clean = [i for i in range(len(waves)) if i not in nonfinite]
        out = np.zeros((len(waves), self.embed_dim), dtype=np.float32)
        emb, problems = self._embed_waves([waves[i] for i in clean],
                                          batch_seconds or self.batch_seconds)
        out[clean] = emb.numpy()
        problems = {**nonfinite, **{clean[u]: why for u, why in problems.items()}}
        return _deliver(out, problems, return_valid, "waveform")

    def embed_windows(self, wave: torch.Tensor | np.ndarray, windows: np.ndarray,
                      cmn: str = "sliding", block_seconds: float = 60.0,
                      margin_seconds: float = 2.0, batch_seconds: float | None = None,
                      return_valid: bool = False
                      ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Embed windows (W, 2) ``[start, end)`` seconds of one recording ``wave`` (N,) from
        shared frame-level features: the front-end and the trunk run once over each stretch of
        overlapping windows (blocks of about ``block_seconds``, with ``margin_seconds`` of
        context where a longer stretch is cut), and each window is pooled from its span of the
        trunk's frames, with ``cmn`` ``"sliding"`` (each frame less the mean of the longest
        window's length centred on it) or ``"block"`` mean normalisation; batches hold at most
        ``batch_seconds`` of padded audio. With windows overlapping by half this is half the
        work of :meth:`embed_batch` on the windows cut out, with somewhat different embeddings
        (:mod:`r2n_audio.inference.shared_frames` says how and why).

        Returns (W, D) float32 embeddings after the bundle's normalisation, always finite, as
        :meth:`embed_batch` (and ``valid (W,)`` with ``return_valid``); without it, raises
        :class:`AudioError` for a window (``window i``) with NaN/Inf samples, no signal, too
        few frames, or a non-finite network output.
        """
        wave = torch.as_tensor(wave, dtype=torch.float32).cpu()
        if cmn not in CMN_MODES:
            raise ModelError(f"cmn must be one of {CMN_MODES}, got {cmn!r}")
        if wave.dim() != 1:
            raise ValueError(f"wave must be (N,), got shape {tuple(wave.shape)}")
        bounds = np.clip(np.round(np.asarray(windows, dtype=np.float64).reshape(-1, 2)
                                  * self.sample_rate), 0, wave.shape[0]).astype(np.int64)
        problems = nonfinite_windows(wave, bounds)
        if problems:  # the others in their blocks see zeros there
            wave = torch.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
        raw, status = embed_recording(
            self.frontend, self.model, wave, bounds, int(block_seconds * self.sample_rate),
            int(margin_seconds * self.sample_rate),
            (batch_seconds or self.batch_seconds) * self.sample_rate, self.embed_dim,
            self.precision, cmn)
        for i in np.flatnonzero(status != OK).tolist():
            problems.setdefault(i, _NO_SIGNAL if status[i] == NO_SIGNAL else _TOO_LITTLE)
        for i in np.flatnonzero(~torch.isfinite(raw).all(1).numpy()).tolist():
            problems.setdefault(i, _NONFINITE_OUTPUT)
        emb = self._normalise(raw.nan_to_num(0.0, 0.0, 0.0))
        emb[list(problems)] = 0.0
        return _deliver(emb.numpy(), problems, return_valid, "window")

    def embed_file(self, path: str | os.PathLike) -> np.ndarray:
        """Embedding (D,) of one audio file.

        Raises
        ------
        AudioError
            A bad file (see :func:`r2n_audio.audio.load_audio`), a file with no signal, or a
            non-finite network output.
        """
        wave = load_audio(path, sample_rate=self.sample_rate)
        emb, problems = self._embed_waves([wave], self.batch_seconds)
        if problems:
            raise AudioError(path, problems[0])
        return emb[0].numpy()

    def embed_files(self, paths: Sequence[str | os.PathLike], batch_seconds: float | None = None,
                    workers: int = 1) -> np.ndarray:
        """Embeddings (len(paths), D) in input order. Raises the first bad file's AudioError."""
        out = np.zeros((len(paths), self.embed_dim), dtype=np.float32)
        for result in self.iter_files(paths, batch_seconds, workers):
            if result.error is not None:
                raise result.error
            out[result.index] = result.embedding
        return out

    def iter_files(self, paths: Sequence[str | os.PathLike], batch_seconds: float | None = None,
                   workers: int = 1) -> Iterator[FileResult]:
        """Embed files in length-sorted batches, yielding one :class:`FileResult` per file.

        Results come in processing order (shortest first); a bad file yields its
        :class:`AudioError` without stopping the others. Durations for sorting come from file
        headers; ``workers`` threads decode the next batch while the network runs.
        """
        budget = (batch_seconds or self.batch_seconds) * self.sample_rate
        durations: dict[int, int] = {}
        for i, path in enumerate(paths):
            try:
                seconds = audio_duration(path)
            except AudioError as err:
                yield FileResult(i, None, err, 0.0)
                continue
            # Capped at the budget: a long file sits alone in its batch and is windowed.
            durations[i] = min(int(seconds * self.sample_rate), int(budget))
        order = sorted(durations, key=lambda i: durations[i])
        batches = list(duration_batches(order, durations, budget))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            loads = _prefetch(pool, batches, lambda i: self._load(paths[i]))
            for batch, waves in zip(batches, loads):
                good = [(i, w) for i, w in zip(batch, waves) if not isinstance(w, AudioError)]
                for i, w in zip(batch, waves):
                    if isinstance(w, AudioError):
                        yield FileResult(i, None, w, 0.0)
                if good:
                    emb, problems = self._embed_waves([w for _, w in good],
                                                      budget / self.sample_rate)
                    for u, ((i, w), e) in enumerate(zip(good, emb.numpy())):
                        if u in problems:
                            yield FileResult(i, None, AudioError(paths[i], problems[u]), 0.0)
                        else:
                            yield FileResult(i, e, None, w.shape[0] / self.sample_rate)

    def similarity(self, path_a: str | os.PathLike, path_b: str | os.PathLike) -> float:
        """Cosine similarity of two audio files' embeddings, as ``r2n-audio score`` computes it.

        Raises :class:`AudioError` for a bad file (or one with no signal).
        """
        a, b = self.embed_files([path_a, path_b])
        return cosine_similarity(a, b)

    def verify(self, path_a: str | os.PathLike, path_b: str | os.PathLike,
               threshold: float | None = None, calibration: Any = None) -> Decision:
        """Are two recordings the same speaker? (SpeechBrain's ``verify_files``.)

        Parameters
        ----------
        path_a, path_b : path
        threshold : float, optional
            Cosine threshold; default: the bundle's ``meta["threshold"]``.
        calibration : Calibration or path, optional
            Decide on a log-likelihood ratio >= 0 instead.

        Returns
        -------
        Decision
            ``score``, ``same`` (``None`` without any threshold), the ``threshold`` and its
            ``source`` (see :mod:`r2n_audio.scoring.decision`).
        """
        return decide(self.similarity(path_a, path_b), threshold, calibration, self.meta)

    def _load(self, path: str | os.PathLike) -> torch.Tensor | AudioError:
        try:
            return load_audio(path, sample_rate=self.sample_rate)
        except AudioError as err:
            return err


def _load_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`load_bundle`, with the unpickler's other failures (a text file gives a KeyError)
    turned into the same one-line :class:`ModelError`."""
    try:
        return load_bundle(path)
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001  torch's unpickler raises many kinds on junk
        raise ModelError(f"{path}: not a readable torch file ({type(err).__name__}); expected "
                         f"an r2n-audio bundle") from None


def _deliver(out: np.ndarray, problems: dict[int, str], return_valid: bool, what: str
             ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``out`` with a validity mask, or ``out`` after raising for the first row in
    ``problems`` (``{row: why}``; their rows of ``out`` are already 0)."""
    if return_valid:
        valid = np.ones(len(out), dtype=bool)
        valid[list(problems)] = False
        return out, valid
    if problems:
        first = min(problems)
        raise AudioError(f"{what} {first}", f"{problems[first]} ({len(problems)} of "
                                            f"{len(out)} rows have no embedding)")
    return out


def _prefetch(pool: ThreadPoolExecutor, batches: list[list[int]], load) -> Iterator[list]:
    """Yield each batch's loaded items while the next batch is already being decoded."""
    pending = [pool.submit(load, i) for i in batches[0]] if batches else []
    for k in range(len(batches)):
        current = pending
        if k + 1 < len(batches):
            pending = [pool.submit(load, i) for i in batches[k + 1]]
        yield [f.result() for f in current]
