"""Load and validate audio: the only place in r2n-audio that decodes files.

Files are decoded with soundfile (wav, flac, ogg, opus, mp3), mixed down to mono and resampled with
``torchaudio.functional.resample``. Mixdown, resampling and clipping are reported once per
process through :mod:`logging` (not once per file), so a corpus at 8 kHz says so one time.
Every problem with a file is an :class:`~r2n_audio.errors.AudioError` naming the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from r2n_audio.errors import AudioError

if TYPE_CHECKING:
    import torch

__all__ = ["AUDIO_EXTENSIONS", "AudioError", "load_audio", "load_random_segment", "audio_duration"]

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


def _read(path: Path, offset: float = 0.0, duration: float | None = None
          ) -> tuple[np.ndarray, int]:
    """Decode ``path`` (or ``duration`` seconds of it from ``offset``) to float32 ``(N, C)``
    and its sample rate, mapping decoder errors."""
    _check_exists(path)
    _report_once("soundfile", "decoding audio with soundfile %s (libsndfile %s)",
                 sf.__version__, sf.__libsndfile_version__, level=logging.DEBUG)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            if offset or duration is not None:
                start = round(offset * sr)
                if offset < 0 or start >= f.frames:
                    raise AudioError(path, f"offset {offset:.3f} s is outside the file "
                                           f"({f.frames / sr:.3f} s)")
                f.seek(start)
            frames = -1 if duration is None else max(1, round(duration * sr))
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(path, f"cannot decode audio ({err}); expected one of "
                               f"{', '.join(AUDIO_EXTENSIONS)}") from None
    return data, int(sr)


def _validate(path: Path, data: np.ndarray, sr: int, min_seconds: float) -> None:
    if data.shape[0] == 0:
        raise AudioError(path, "contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or Inf samples")
    seconds = data.shape[0] / sr
    if seconds < min_seconds:
        raise AudioError(path, f"too short: {seconds:.3f} s, the minimum is {min_seconds} s")


def _mono(path: Path, data: np.ndarray) -> np.ndarray:
    """(N, C) -> (N,) by averaging channels, reported once."""
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0])
    _report_once("mixdown", "mixing %d-channel audio down to mono (first: %s)",
                 data.shape[1], path)
    return data.mean(axis=1)


def load_audio(
    path: str | os.PathLike, sample_rate: int = 16000, min_seconds: float = 0.1,
    offset: float = 0.0, duration: float | None = None,
) -> torch.Tensor:
    """Load an audio file (or a stretch of it) as a mono float waveform at ``sample_rate``.

    Parameters
    ----------
    path : str or PathLike
        A file soundfile can decode (wav, flac, ogg).
    sample_rate : int
        Output rate in Hz; other rates are resampled (windowed sinc, torchaudio's default).
    min_seconds : float
        Shortest accepted duration, measured before resampling.
    offset, duration : float
        Read only ``duration`` seconds (``None``: to the end) from ``offset`` seconds: the
        decoder seeks, so a few seconds of a long file cost what a few seconds cost.

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
    data, sr = _read(path, offset, duration)
    _validate(path, data, sr, min_seconds)
    wave = torch.from_numpy(_mono(path, data))
    if sr != sample_rate:
        import torchaudio.functional as taf  # lazy: only needed for off-rate files

        _report_once("resample", "resampling audio from %d Hz to %d Hz (first: %s)",
                     sr, sample_rate, path)
        wave = taf.resample(wave, sr, sample_rate)
    peak = float(wave.abs().max())
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
