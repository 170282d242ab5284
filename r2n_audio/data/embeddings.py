"""Embedding stores: a folder of ``.npy`` files, one ``.npz``, or Kaldi ``.ark``/``.scp``.

:func:`load_embeddings` detects the store from the path: a folder is an npy store (key = path
relative to the folder without ``.npy``, POSIX separators, so ``spk1/u2.npy`` is ``spk1/u2``),
``*.npz`` an npz archive (key = array name), ``*.ark``/``*.scp`` a Kaldi archive or script read
through kaldiio (``xvector.scp`` as Kaldi recipes write it). Every write is atomic.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from r2n_audio.atomic import atomic_path
from r2n_audio.errors import DataFormatError

__all__ = ["load_embeddings", "save_embeddings", "save_npy_embedding", "npy_keys",
           "npy_key_problem", "store_format"]

_FORMATS = ("npy", "npz", "ark", "scp")
_HINT = "expected a folder of .npy files, a .npz file, or a Kaldi .ark/.scp file"


def store_format(path: str | os.PathLike) -> str:
    """The store type of an existing or future path: ``"npy"``, ``"npz"``, ``"ark"``,
    ``"scp"``; a path without a known suffix is an npy folder."""
    suffix = Path(path).suffix.lower()
    if suffix in (".npz", ".ark", ".scp"):
        return suffix[1:]
    if Path(path).is_file():
        raise DataFormatError(path, f"unknown embedding format '{suffix or 'no suffix'}': "
                                    f"{_HINT}")
    return "npy"


def npy_keys(root: str | os.PathLike) -> set[str]:
    """Keys of an npy store: relative paths of its ``.npy`` files without the suffix.

    Hidden files (``.name.*.npy``, the temporary names of :func:`r2n_audio.atomic.atomic_path`
    left by a killed writer) are not keys.
    """
    root = Path(root)
    if not root.is_dir():
        return set()
    return {p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.npy")
            if not p.name.startswith(".")}


def _vector(path, key: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 2 and 1 in array.shape:  # (1, D) or (D, 1) rows from some writers
        array = array.reshape(-1)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.number):
        raise DataFormatError(path, f"embedding '{key}' has shape {array.shape} "
                                    f"(dtype {array.dtype}); expected a non-empty vector (D,)")
    if not np.isfinite(array).all():
        raise DataFormatError(path, f"embedding '{key}' contains NaN or Inf")
    return array.astype(np.float32, copy=False)


def _read_raw(path: Path, kind: str) -> Mapping:
    if kind == "npy":
        root = path
        return {k: np.load(root / f"{k}.npy", allow_pickle=False) for k in sorted(npy_keys(root))}
    if kind == "npz":
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    import kaldiio  # lazy: only Kaldi stores need it

    reader = kaldiio.load_ark(str(path)) if kind == "ark" else kaldiio.load_scp(str(path))
    return dict(reader)


def load_embeddings(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every embedding of a store into ``{key: vector (D,) float32}``.

    Raises
    ------
    DataFormatError
        Missing path, unknown format, unreadable store, no embeddings, a non-vector or
        non-finite entry, or vectors of different dimensions.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, f"embedding store not found ({_HINT})")
    kind = store_format(path)
    try:
        raw = _read_raw(path, kind)
    except DataFormatError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise DataFormatError(path, f"cannot read {kind} embeddings: {err}") from None
    if not raw:
        raise DataFormatError(path, f"no embeddings found ({_HINT})")
    out = {key: _vector(path, key, value) for key, value in raw.items()}
    dims = {v.shape[0] for v in out.values()}
    if len(dims) > 1:
        first = next(iter(out.values())).shape[0]
        odd = next(k for k, v in out.items() if v.shape[0] != first)
        raise DataFormatError(path, f"embeddings differ in dimension ({sorted(dims)}), e.g. "
                                    f"'{odd}' has {out[odd].shape[0]}")
    return out


def npy_key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a file of an npy store (``root/<key>.npy``), or None.

    Only plain relative paths are accepted, so that two keys never name one file: ``spk/`` and
    ``spk``, ``a//b`` and ``a/b``, ``a/./b`` and ``a/b`` would each write one ``.npy``, and
    ``a/../b`` or ``/abs`` would write outside the store. A last component starting with ``.``
    would be taken for a killed writer's temporary and removed.

    >>> npy_key_problem("id10270/x6uY/00001") is None
    True
    >>> npy_key_problem("spk/")
    "has an empty path component ('//', or '/' at an end)"
    """
    if not key:
        return "is empty"
    if any(c.isspace() or c == "\0" for c in key):
        return "contains whitespace or a NUL character"
    parts = key.split("/")
    if "" in parts:
        return "has an empty path component ('//', or '/' at an end)"
    if "." in parts or ".." in parts:
        return "has a '.' or '..' path component"
    if parts[-1].startswith("."):
        return "names a hidden file (a leading '.' marks temporary files)"
    return None


def _npy_file(root: Path, key: str) -> Path:
    problem = npy_key_problem(key)
    if problem is not None:
        raise ValueError(f"embedding key {key!r} {problem}; an npy store needs plain relative "
                         "paths")
    *folders, name = key.split("/")
    return root.joinpath(*folders, name + ".npy")


def save_npy_embedding(root: str | os.PathLike, key: str, vector: np.ndarray) -> Path:
    """Write one vector to ``root/<key>.npy`` atomically (``key`` may contain ``/``).

    Returns the written path.
    """
    target = _npy_file(Path(root), key)
    with atomic_path(target) as tmp:
        np.save(tmp, np.asarray(vector, dtype=np.float32))
    return target


def _save_kaldi(path: Path, kind: str, embeddings: Mapping[str, np.ndarray]) -> None:
    import kaldiio

    ark = path.with_suffix(".ark").absolute()  # absolute: the script loads from any folder
    scp = path.with_suffix(".scp").absolute()
    for key in embeddings:
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"Kaldi keys cannot be empty or contain whitespace: {key!r}")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in embeddings.items()}
    with atomic_path(ark) as tmp_ark, atomic_path(scp) as tmp_scp:
        kaldiio.save_ark(str(tmp_ark), arrays, scp=str(tmp_scp))
        # The script points into the archive: make it name the final archive, not the temp.
        text = tmp_scp.read_text(encoding="utf-8").replace(str(tmp_ark), str(ark))
        tmp_scp.write_text(text, encoding="utf-8")


def _save_npz(path: Path, embeddings: Mapping[str, np.ndarray]) -> None:
    # Written member by member rather than np.savez(**embeddings): keys such as "file" would
    # collide with savez's own arguments.
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for key, vector in embeddings.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(vector, dtype=np.float32),
                                              allow_pickle=False)


def save_embeddings(
    path: str | os.PathLike, embeddings: Mapping[str, np.ndarray], format: str | None = None
) -> None:
    """Write ``{key: vector (D,)}`` as an npy folder, an ``.npz`` or a Kaldi ark+scp pair.

    Parameters
    ----------
    path : str or PathLike
        Folder (npy), ``*.npz``, or ``*.ark``/``*.scp`` (both files are written, same stem).
    embeddings : mapping of str to np.ndarray (D,)
        Vectors, stored as float32.
    format : {"npy", "npz", "ark", "scp"}, optional
        Overrides the detection from ``path``.
    """
    path = Path(path)
    kind = format or store_format(path)
    if kind not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, not {kind!r}")
    if kind == "npy":
        for key, vector in embeddings.items():
            save_npy_embedding(path, key, vector)
    elif kind == "npz":
        _save_npz(path, embeddings)
    else:
        _save_kaldi(path, kind, embeddings)
