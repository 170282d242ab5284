"""Load and validate audio: the only place in r2n-audio that decodes files.

Files are decoded with soundfile (wav, flac, ogg, opus, mp3), mixed down to mono and resampled with
``torchaudio.functional.resample``. Mixdown, resampling and clipping are reported once per
process through :mod:`logging` (not once per file), so a corpus at 8 kHz says so one time.
Every problem with a file is an :class:`~r2n_audio.errors.AudioError` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from r2n_audio.errors import AudioError

if TYPE_CHECKING:
    import torch

__all__ = ["AUDIO_EXTENSIONS", "BLOCK_FRAMES", "AudioError", "load_audio", "load_random_segment",
           "audio_duration"]

# What soundfile (libsndfile >= 1.1) decodes, the one list `embed`, `verify` and the manifests
# use. m4a/aac needs ffmpeg: `r2n-audio prepare voxceleb` converts it to wav first.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".opus", ".mp3")

logger = logging.getLogger(__name__)

# Kinds of conversion already reported in this process ("soundfile", "mixdown", "resample", ...).
_reported: set[str] = set()


def _report_once(kind: str, message: str, *args: object, level: int = logging.INFO) -> None:
    """Log ``message`` the first time ``kind`` happens in this process, then stay quiet."""
    if kind not in _reported:
        _reported.add(kind)
        logger.log(level, message + " (reported once)", *args)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")


# Samples (per channel) decoded at a time: 2^20 is 22 s at 48 kHz, 8 MB of float32 stereo.
BLOCK_FRAMES = 1 << 20


def _blocks(path: Path, offset: float, duration: float | None,
            block_frames: int) -> Iterator[tuple[np.ndarray, int, int]]:
    """Decode ``path`` (or ``duration`` seconds of it from ``offset``) in float32 ``(n, C)``
    blocks of at most ``block_frames``, each with the file's sample rate and the number of
    samples the header announces; maps decoder errors. Every block is read into the same
    buffer (the caller consumes it before asking for the next)."""
    _check_exists(path)
    _report_once("soundfile", "decoding audio with soundfile %s (libsndfile %s)",
                 sf.__version__, sf.__libsndfile_version__, level=logging.DEBUG)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            if offset or duration is not None:
                start = round(offset * sr)
                if offset < 0 or start >= f.frames:
                    raise AudioError(path, f"offset {offset:.3f} s is outside the file "
                                           f"({f.frames / sr:.3f} s)")
                f.seek(start)
            left = -1 if duration is None else max(1, round(duration * sr))
            announced = f.frames - f.tell() if left < 0 else min(left, f.frames - f.tell())
            buffer = np.empty((min(block_frames, max(1, announced)), f.channels), np.float32)
            while left:
                size = len(buffer) if left < 0 else min(len(buffer), left)
                block = f.read(size, dtype="float32", always_2d=True, out=buffer[:size])
                if not len(block):
                    return
                left = left - len(block) if left > 0 else left
                yield block, sr, announced
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(path, f"cannot decode audio ({err}); expected one of "
                               f"{', '.join(AUDIO_EXTENSIONS)}") from None


def _mono(path: Path, data: np.ndarray) -> np.ndarray:
    """(N, C) -> (N,) by averaging channels, reported once."""
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0])
    _report_once("mixdown", "mixing %d-channel audio down to mono (first: %s)",
                 data.shape[1], path)
    return data.mean(axis=1, dtype=np.float32)


class _StreamResampler:
    """``torchaudio.functional.resample`` of a signal that arrives in blocks, equal to
    resampling it whole (to float rounding).

    With ``g = gcd(orig, new)``, output sample ``j * new/g`` depends only on input samples near
    ``j * orig/g``. Each call resamples the input from a multiple of ``orig/g`` (so the filter
    phases line up with the whole-signal ones), with ``context`` samples on either side wider
    than the sinc kernel, and keeps only the outputs whose inputs were all there.
    """

    def __init__(self, orig: int, new: int) -> None:
        g = math.gcd(orig, new)
        self.orig, self.new, self.step_in, self.step_out = orig, new, orig // g, new // g
        # torchaudio's kernel reaches 6 zero crossings / 0.99 rolloff of the lower rate: 8 is
        # a safe bound, plus one input step for the phase.
        width = math.ceil(8 * orig / min(orig, new)) + 8 + self.step_in
        self.context = self.step_in * math.ceil(width / self.step_in)
        self.pending: list[np.ndarray] = []
        self.start = 0  # input index of the first pending sample
        self.seen = 0  # input samples pushed so far
        self.emitted = 0  # output samples returned so far (a multiple of step_out until finish)

    def push(self, samples: np.ndarray, final: bool = False) -> torch.Tensor:
        """Add input samples (n,); return the outputs that are now complete."""
        import torch
        import torchaudio.functional as taf  # lazy: only needed for off-rate files

        self.pending.append(samples)
        self.seen += len(samples)
        first = self.emitted // self.step_out * self.step_in  # input of the next output
        stop = self.seen if final else (self.seen - self.context) // self.step_in * self.step_in
        if stop <= first:
            return torch.zeros(0)
        buffer = np.concatenate(self.pending)
        low = max(self.start, first - self.context)
        high = self.seen if final else stop + self.context
        out = taf.resample(torch.from_numpy(buffer[low - self.start:high - self.start]),
                           self.orig, self.new)
        total = -(-self.seen * self.step_out // self.step_in)  # ceil: torchaudio's length
        count = total - self.emitted if final else (stop - first) // self.step_in * self.step_out
        skip = (first - low) // self.step_in * self.step_out
        self.emitted += count
        keep = max(self.start, stop - self.context)
        self.pending, self.start = [buffer[keep - self.start:]], keep
        return out[skip:skip + count]


class _Output:
    """The output waveform, allocated once from the header's length and filled in place (no
    list of pieces and final concatenation, which would double the peak); grows if a header
    under-announced (some compressed formats estimate)."""

    def __init__(self) -> None:
        import torch

        self.wave, self.size = torch.empty(0), 0

    def reserve(self, size: int) -> None:
        if size > self.wave.numel():
            import torch

            grown = torch.empty(size)
            grown[:self.size] = self.wave[:self.size]
            self.wave = grown

    def append(self, piece: torch.Tensor) -> None:
        self.reserve(self.size + piece.numel())
        self.wave[self.size:self.size + piece.numel()] = piece
        self.size += piece.numel()

    def result(self) -> torch.Tensor:
        return self.wave[:self.size]


def load_audio(
    path: str | os.PathLike, sample_rate: int = 16000, min_seconds: float = 0.1,
    offset: float = 0.0, duration: float | None = None, block_frames: int = BLOCK_FRAMES,
) -> torch.Tensor:
    """Load an audio file (or a stretch of it) as a mono float waveform at ``sample_rate``.

    The file is decoded, mixed down and resampled in blocks of ``block_frames`` samples, so
    memory is the output (230 MB for an hour at 16 kHz) plus a block, whatever the file's rate
    and channels; the result equals decoding and resampling the whole file at once.

    Parameters
    ----------
    path : str or PathLike
        A file soundfile can decode (see :data:`AUDIO_EXTENSIONS`).
    sample_rate : int
        Output rate in Hz; other rates are resampled (windowed sinc, torchaudio's default).
    min_seconds : float
        Shortest accepted duration, measured before resampling.
    offset, duration : float
        Read only ``duration`` seconds (``None``: to the end) from ``offset`` seconds: the
        decoder seeks, so a few seconds of a long file cost what a few seconds cost.
    block_frames : int
        Samples per channel decoded at a time.

    Returns
    -------
    waveform : torch.Tensor (N,)
        float32 samples in [-1, 1]; channels averaged.

    Raises
    ------
    AudioError
        Missing or unreadable file, zero samples, NaN/Inf samples, shorter than
        ``min_seconds``, or ``offset`` outside the file.
    """
    import torch  # lazy: manifests and scoring import this module without needing torch

    path = Path(path)
    out = _Output()
    resampler, sr, count = None, sample_rate, 0
    for block, sr, announced in _blocks(path, offset, duration, max(1, int(block_frames))):
        if not np.isfinite(block).all():
            raise AudioError(path, "contains NaN or Inf samples")
        mono = _mono(path, block)
        count += len(mono)
        out.reserve(-(-announced * sample_rate // sr))
        if sr != sample_rate:
            if resampler is None:
                _report_once("resample", "resampling audio from %d Hz to %d Hz (first: %s)",
                             sr, sample_rate, path)
                resampler = _StreamResampler(sr, sample_rate)
            out.append(resampler.push(mono))
        else:
            out.append(torch.from_numpy(mono))
    if count == 0:
        raise AudioError(path, "contains no samples")
    if count / sr < min_seconds:
        raise AudioError(path, f"too short: {count / sr:.3f} s, the minimum is {min_seconds} s")
    if resampler is not None:
        out.append(resampler.push(np.zeros(0, dtype=np.float32), final=True))
    wave = out.result()
    low, high = torch.aminmax(wave)  # no |wave| temporary the size of the file
    peak = max(-float(low), float(high))
    if peak > 1.0:
        # Float files (and sinc resampling of loud PCM) can exceed full scale.
        _report_once("clip", "clipping samples beyond [-1, 1] (peak %.3f in %s)", peak, path)
        wave = wave.clamp_(-1.0, 1.0)
    return wave


def load_random_segment(path: str | os.PathLike, num_samples: int, sample_rate: int,
                        rng: np.random.Generator, file_seconds: float | None = None
                        ) -> torch.Tensor:
    """``num_samples`` samples (N,) from a random offset of a file, decoding only that stretch.

    Parameters
    ----------
    path : str or PathLike
    num_samples : int
        Length wanted at ``sample_rate``.
    sample_rate : int
    rng : np.random.Generator
        Draws the offset.
    file_seconds : float, optional
        The file's duration, if the caller already knows it (saves a header read).

    Returns
    -------
    waveform : torch.Tensor (N,)
        Exactly ``num_samples`` samples; the whole file (fewer samples, for the caller to pad
        or tile) when it is not longer than that.
    """
    import torch

    seconds = num_samples / sample_rate
    total = audio_duration(path) if file_seconds is None else file_seconds
    if total <= seconds:
        return load_audio(path, sample_rate, min_seconds=0.0)
    wave = load_audio(path, sample_rate, min_seconds=0.0,
                      offset=float(rng.uniform(0.0, total - seconds)), duration=seconds)
    # Rounding at the file's own rate can leave a sample more or less after resampling.
    return torch.nn.functional.pad(wave[:num_samples], (0, max(0, num_samples - wave.numel())))


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header (no decoding).

    Raises
    ------
    AudioError
        Missing or unreadable file.
    """
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(path, f"cannot read the audio header ({err})") from None
    return float(info.frames) / float(info.samplerate)
