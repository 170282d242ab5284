"""RTTM files (NIST Rich Transcription Time Marked): read, check and write speaker turns.

One ``SPEAKER`` line per turn, ten space-separated fields::

    SPEAKER <file-id> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>

Onsets and durations are in seconds. r2n-audio writes one RTTM per recording, named
``<key>.rttm`` with the key as file id, as pyannote, WeSpeaker and dscore expect. The reader
accepts any whitespace, skips blank lines, ``#`` comments and non-``SPEAKER`` records
(``SPKR-INFO`` ...), and names file and line for anything it cannot use: too few fields, a
non-numeric or negative onset or duration, or (when a file id is expected) another file id.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from r2n_audio.atomic import atomic_write_text
from r2n_audio.diarization.segments import Turn
from r2n_audio.errors import DataFormatError

__all__ = ["read_rttm", "write_rttm", "format_rttm", "reference_turns"]


def _number(path: str | os.PathLike, line: int, field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(path, f"{field} {text!r} is not a number", line) from None
    if not math.isfinite(value) or value < 0:
        raise DataFormatError(path, f"{field} {text} is negative or not finite; RTTM needs "
                                    f"onset >= 0 and duration >= 0 in seconds", line)
    return value


def read_rttm(path: str | os.PathLike, file_id: str | None = None) -> dict[str, list[Turn]]:
    """Read the ``SPEAKER`` lines of an RTTM file.

    Parameters
    ----------
    path : str or PathLike
    file_id : str, optional
        The recording this file must describe; a line naming another file id is an error.

    Returns
    -------
    dict
        ``{file_id: [Turn(start, end, speaker), ...]}`` in file order (zero-length turns kept;
        they score nothing).

    Raises
    ------
    DataFormatError
        Missing file, a short line, a bad number, a negative onset or duration, another file
        id; the message names the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(path, f"cannot read RTTM: {getattr(err, 'strerror', None) or err}") from None
    turns: dict[str, list[Turn]] = {} if file_id is None else {file_id: []}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise DataFormatError(path, f"a SPEAKER line needs at least 8 fields (type, file, "
                                        f"channel, onset, duration, NA, NA, speaker), got "
                                        f"{len(fields)}", number)
        if file_id is not None and fields[1] != file_id:
            raise DataFormatError(path, f"names file {fields[1]!r}, but this RTTM is the "
                                        f"reference of {file_id!r}", number)
        onset = _number(path, number, "onset", fields[3])
        duration = _number(path, number, "duration", fields[4])
        turns.setdefault(fields[1], []).append(Turn(onset, onset + duration, fields[7]))
    return turns


def format_rttm(file_id: str, turns: Iterable[Turn]) -> str:
    """The RTTM text of ``turns`` (millisecond precision, sorted by onset)."""
    if any(c.isspace() for c in file_id):
        raise ValueError(f"an RTTM file id cannot contain whitespace: {file_id!r}")
    lines = [f"SPEAKER {file_id} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} "
             f"<NA> <NA>\n" for t in sorted(turns, key=lambda t: (t.start, t.end, t.speaker))]
    return "".join(lines)


def write_rttm(path: str | os.PathLike, file_id: str, turns: Iterable[Turn]) -> Path:
    """Write ``turns`` of one recording to ``path`` atomically (an empty file for no turns)."""
    atomic_write_text(path, format_rttm(file_id, turns))
    return Path(path)


def reference_turns(reference: str | os.PathLike, key: str) -> list[Turn]:
    """The reference turns of recording ``key``.

    ``reference`` is a folder holding ``<key>.rttm`` (the layout ``diarize`` writes) or one RTTM
    file with many file ids (the key's lines are taken; none means no speech).

    Raises
    ------
    DataFormatError
        No ``<key>.rttm`` in the folder, or a malformed file (see :func:`read_rttm`).
    """
    reference = Path(reference)
    if reference.is_dir():
        path = reference / f"{key}.rttm"
        if not path.is_file():
            raise DataFormatError(path, f"no reference RTTM for recording {key!r}")
        return read_rttm(path, file_id=key)[key]
    return read_rttm(reference).get(key, [])
