"""Kaldi-style data files: ``wav.scp``, ``utt2spk``, ``spk2utt`` and trial lists.

Every reader names the file and the 1-based line of the first problem
(:class:`~r2n_audio.errors.DataFormatError`); blank lines are skipped, and a UTF-8 byte-order
mark at the start of a file is dropped. Writers go through
:mod:`r2n_audio.atomic` and sort by key, as Kaldi's tools expect.

Trial lists come in two formats, detected from the first line:

- VoxCeleb: ``1 id10270/x6uY/00001.wav id10270/8jEA/00008.wav`` (label first, 1 = target);
- Kaldi: ``enroll test target|nontarget``.

A list of bare ``enroll test`` pairs (no labels, as in challenge evaluation lists) is read too,
with every label -1. Keys drop the audio extension (:func:`utterance_key`), so the VoxCeleb
list above refers to the embedding keyed ``id10270/x6uY/00001``.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from math import inf
from pathlib import Path

import numpy as np

from r2n_audio.atomic import atomic_write_text
from r2n_audio.audio import AUDIO_EXTENSIONS
from r2n_audio.errors import DataFormatError

__all__ = [
    "read_wav_scp", "key_line", "write_wav_scp", "read_utt2spk", "write_utt2spk", "read_utt2dur",
    "write_utt2dur", "utt2dur_line", "read_spk2utt", "write_spk2utt", "spk2utt_from_utt2spk", "utterance_key", "Trials", "read_trials",
    "write_trials",
]

_KALDI_LABELS = {"target": 1, "nontarget": 0}
_VOX_LABELS = {"1": 1, "0": 0}


def _lines(path: str | os.PathLike, raw: bool = False) -> Iterator[tuple]:
    """Yield ``(line_number, fields)`` (plus the raw line if ``raw``) for each non-blank line.

    A missing file or one without any entry is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    empty = True
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first key.
        with open(path, encoding="utf-8-sig") as f:
            for number, line in enumerate(f, start=1):
                fields = line.split()
                if fields:
                    empty = False
                    yield (number, fields, line) if raw else (number, fields)
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"not a UTF-8 text file ({err.reason})") from None
    if empty:
        raise DataFormatError(path, "empty file: no entries")


def _fast_table(path: str | os.PathLike, maxsplit: int) -> dict[str, str] | None:
    """``{first field: rest}`` of a two-column file in one pass, or ``None`` when it needs the
    line-by-line reader (missing, not UTF-8, empty, a blank line, a line of another width, a
    duplicate key), which then names the first bad line.

    A million-line manifest reads several times faster this way, holding nothing but the
    table (with ``maxsplit=1`` values keep their line end; ``maxsplit=2`` makes a third
    field an error).
    """
    counter = itertools.count()
    try:
        with open(path, encoding="utf-8-sig") as f:
            table = dict(line.split(None, maxsplit) for line, _ in zip(f, counter))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return table if table and len(table) == next(counter) else None


def _add_unique(table: dict, key: str, value: object, path, number: int, seen: dict) -> None:
    if key in table:
        raise DataFormatError(path, f"duplicate key '{key}' (first on line {seen[key]})", number)
    table[key] = value
    seen[key] = number


def _check_key(key: str, what: str) -> None:
    if not key or any(c.isspace() for c in key):
        raise ValueError(f"{what} {key!r} is empty or contains whitespace")


def read_wav_scp(path: str | os.PathLike) -> dict[str, str]:
    """Read ``utt path`` lines; relative paths are resolved against the file's folder.

    Paths may contain spaces (everything after the key is the path). Piped commands
    (``sox ... |``) are refused: convert the audio to files first.
    """
    base = Path(path).parent
    table = _fast_table(path, 1)
    if table is not None:
        # map() over C methods: a million lines in a fraction of the comprehension's time
        table = dict(zip(table.keys(), map(str.strip, table.values())))
        if not any(map(str.endswith, table.values(), itertools.repeat("|"))):
            if all(map(str.startswith, table.values(), itertools.repeat("/"))):
                return table
            return {k: v if os.path.isabs(v) else str(base / v) for k, v in table.items()}
    table = {}
    seen: dict[str, int] = {}
    for number, fields, line in _lines(path, raw=True):
        if len(fields) < 2:
            raise DataFormatError(path, "expected 'utterance path'", number)
        value = line.strip()[len(fields[0]):].strip()
        if value.endswith("|"):
            raise DataFormatError(path, "piped commands are not supported; write the audio to "
                                        "files and list their paths", number)
        resolved = value if os.path.isabs(value) else str(base / value)
        _add_unique(table, fields[0], resolved, path, number, seen)
    return table


def key_line(path: str | os.PathLike, key: str) -> int | None:
    """1-based line of the first entry keyed ``key`` in a Kaldi-style file (for error
    messages), or None."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.split(maxsplit=1)[:1] == [key]:
                return number
    return None


def write_wav_scp(path: str | os.PathLike, mapping: Mapping[str, str | os.PathLike]) -> None:
    """Write ``utt path`` lines sorted by utterance (paths written as given)."""
    for key in mapping:
        _check_key(key, "utterance key")
    text = "".join(f"{k} {mapping[k]}\n" for k in sorted(mapping))
    atomic_write_text(path, text)


def read_utt2spk(path: str | os.PathLike) -> dict[str, str]:
    """Read ``utt speaker`` lines into ``{utt: speaker}``."""
    table = _fast_table(path, 2)
    if table is not None:  # split() without a remainder leaves no line end on the value
        return table
    table = {}
    seen: dict[str, int] = {}
    for number, fields in _lines(path):
        if len(fields) != 2:
            raise DataFormatError(path, f"expected 'utterance speaker', got {len(fields)} "
                                        "fields", number)
        _add_unique(table, fields[0], fields[1], path, number, seen)
    return table


def write_utt2spk(path: str | os.PathLike, utt2spk: Mapping[str, str]) -> None:
    """Write ``utt speaker`` lines sorted by utterance."""
    for utt, spk in utt2spk.items():
        _check_key(utt, "utterance key")
        _check_key(spk, "speaker")
    atomic_write_text(path, "".join(f"{u} {utt2spk[u]}\n" for u in sorted(utt2spk)))


def read_utt2dur(path: str | os.PathLike) -> dict[str, float]:
    """Read Kaldi ``utt seconds`` lines into ``{utt: seconds}``.

    Durations let samplers and crop readers skip the audio headers (a million of them take
    minutes on a network disk).
    """
    fast = _fast_table(path, 2)
    if fast is not None:
        try:
            table = dict(zip(fast.keys(), map(float, fast.values())))
        except ValueError:
            table = {}
        seconds = np.fromiter(table.values(), float, len(table))
        if table and (seconds > 0).all() and (seconds < inf).all():  # NaN fails both
            return table
    table = {}
    seen: dict[str, int] = {}
    for number, fields in _lines(path):
        if len(fields) != 2:
            raise DataFormatError(path, f"expected 'utterance seconds', got {len(fields)} "
                                        "fields", number)
        try:
            seconds = float(fields[1])
        except ValueError:
            seconds = -1.0
        if not seconds > 0 or seconds == float("inf"):
            raise DataFormatError(path, f"duration '{fields[1]}' is not a positive number of "
                                        "seconds", number)
        _add_unique(table, fields[0], seconds, path, number, seen)
    return table


def write_utt2dur(path: str | os.PathLike, utt2dur: Mapping[str, float]) -> None:
    """Write ``utt seconds`` lines sorted by utterance (seconds to 1e-4, as Kaldi's
    ``get_utt2dur.sh``)."""
    for utt in utt2dur:
        _check_key(utt, "utterance key")
    atomic_write_text(path, "".join(f"{u} {utt2dur[u]:.4f}\n" for u in sorted(utt2dur)))


def utt2dur_line(path: str | os.PathLike, key: str) -> int | None:
    """1-based line of ``key`` in a ``utt2dur`` file (for error messages), or None."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.split(maxsplit=1)[:1] == [key]:
                return number
    return None


def read_spk2utt(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read ``speaker utt1 utt2 ...`` lines into ``{speaker: [utts]}``."""
    table: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for number, fields in _lines(path):
        if len(fields) < 2:
            raise DataFormatError(path, "expected 'speaker utterance [utterance ...]'", number)
        _add_unique(table, fields[0], fields[1:], path, number, seen)
    return table


def write_spk2utt(path: str | os.PathLike, spk2utt: Mapping[str, list[str]]) -> None:
    """Write ``speaker utt1 utt2 ...`` lines sorted by speaker."""
    for spk, utts in spk2utt.items():
        _check_key(spk, "speaker")
        if not utts:
            raise ValueError(f"speaker {spk!r} has no utterances")
        for u in utts:
            _check_key(u, "utterance key")
    atomic_write_text(path, "".join(f"{s} {' '.join(spk2utt[s])}\n" for s in sorted(spk2utt)))


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Invert ``{utt: speaker}`` into ``{speaker: sorted utts}``, speakers sorted."""
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(out.items()))


def utterance_key(path: str | os.PathLike) -> str:
    """The key of an utterance path: POSIX separators, audio extension dropped.

    >>> utterance_key("id10270/x6uY/00001.wav")
    'id10270/x6uY/00001'
    >>> utterance_key("spk1/u2")
    'spk1/u2'
    """
    # String operations, not pathlib: trial lists call this a million times.
    key = os.fspath(path).replace("\\", "/")
    dot = key.rfind(".")
    if dot > key.rfind("/") + 1 and key[dot:].lower() in AUDIO_EXTENSIONS:
        key = key[:dot]
    return key


@dataclass
class Trials:
    """A trial list: parallel enrolment keys, test keys and labels.

    Attributes
    ----------
    enroll, test : list of str (T,)
        Utterance keys (audio extension dropped).
    labels : np.ndarray (T,) int8
        1 = target, 0 = nontarget, -1 = unknown (unlabelled list).
    lines : np.ndarray (T,) int, optional
        1-based line of each trial in the file it was read from (for error messages).
    """

    enroll: list[str]
    test: list[str]
    labels: np.ndarray
    lines: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int8)
        if not (len(self.enroll) == len(self.test) == len(self.labels)):
            raise ValueError(f"enroll, test and labels differ in length: {len(self.enroll)}, "
                             f"{len(self.test)}, {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labelled(self) -> bool:
        """True when every trial has a target/nontarget label."""
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def keys(self) -> list[str]:
        """Unique utterance keys on either side, in order of first appearance."""
        return list(dict.fromkeys([*self.enroll, *self.test]))


def _detect_style(path, number: int, fields: list[str]) -> str:
    if len(fields) == 3 and fields[0] in _VOX_LABELS:
        return "voxceleb"
    if len(fields) == 3 and fields[2] in _KALDI_LABELS:
        return "kaldi"
    if len(fields) == 2:
        return "unlabelled"
    raise DataFormatError(path, "cannot tell the trial format: expected '1 enroll.wav test.wav' "
                                "(VoxCeleb), 'enroll test target|nontarget' (Kaldi) or "
                                "'enroll test' (unlabelled)", number)


# style -> (number of fields, enroll position, test position, label position, label values)
_STYLES: dict[str, tuple[int, int, int, int | None, dict[str, int]]] = {
    "voxceleb": (3, 1, 2, 0, _VOX_LABELS),
    "kaldi": (3, 0, 1, 2, _KALDI_LABELS),
    "unlabelled": (2, 0, 1, None, {}),
}


def read_trials(path: str | os.PathLike) -> Trials:
    """Read a VoxCeleb, Kaldi or unlabelled trial list (format detected from the first line).

    Raises
    ------
    DataFormatError
        Missing or empty file, malformed line, unknown label, or a repeated (enroll, test) pair,
        each naming the file and line.
    """
    enroll: list[str] = []
    test: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    seen: set[tuple[str, str]] = set()
    spec = None
    # Each utterance appears in many trials: convert its key once (a million calls otherwise).
    key = functools.lru_cache(maxsize=None)(utterance_key)
    for number, fields in _lines(path):
        if spec is None:
            style = _detect_style(path, number, fields)
            n_fields, e_pos, t_pos, y_pos, values = spec = _STYLES[style]
        if len(fields) != n_fields:
            raise DataFormatError(path, f"expected {n_fields} fields ({style} format, as on "
                                        f"the first line), got {len(fields)}", number)
        label = -1 if y_pos is None else values.get(fields[y_pos])
        if label is None:
            raise DataFormatError(path, f"unknown label '{fields[y_pos]}' (expected "
                                        f"{' or '.join(values)})", number)
        pair = (key(fields[e_pos]), key(fields[t_pos]))
        if pair in seen:
            first = lines[list(zip(enroll, test)).index(pair)]
            raise DataFormatError(path, f"duplicate trial '{pair[0]} {pair[1]}' (first on line "
                                        f"{first})", number)
        seen.add(pair)
        enroll.append(pair[0])
        test.append(pair[1])
        labels.append(label)
        lines.append(number)
    return Trials(enroll, test, np.array(labels, dtype=np.int8), np.array(lines, dtype=np.int64))


def write_trials(path: str | os.PathLike, trials: Trials, style: str = "kaldi") -> None:
    """Write a trial list as ``enroll test target|nontarget`` (``"kaldi"``) or
    ``1 enroll.wav test.wav`` (``"voxceleb"``, keys get a ``.wav`` suffix)."""
    if style not in ("kaldi", "voxceleb"):
        raise ValueError(f"style must be 'kaldi' or 'voxceleb', not {style!r}")
    if not trials.labelled:
        raise ValueError("cannot write an unlabelled trial list in a labelled format")
    rows = zip(trials.enroll, trials.test, trials.labels.tolist())
    if style == "kaldi":
        text = "".join(f"{e} {t} {'target' if y else 'nontarget'}\n" for e, t, y in rows)
    else:
        text = "".join(f"{y} {e}.wav {t}.wav\n" for e, t, y in rows)
    atomic_write_text(path, text)
