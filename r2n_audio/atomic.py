"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash or a killed job never leaves a partial file under a final name, and an existing file is
only replaced once the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


def _default_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask)."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


# mkstemp makes 0600 files; renamed outputs should have the mode any other new file gets.
_FILE_MODE = _default_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Parameters
    ----------
    path : str or PathLike
        Final destination. Its folder is created if missing.
    suffix : str, optional
        Suffix of the temporary file (defaults to ``path``'s own), for writers such as
        ``np.save`` or matplotlib that pick a format from the extension.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "x.npy")) as tmp:
    ...     np.save(tmp, np.zeros(2))
    >>> sorted(os.listdir(d))
    ['x.npy']
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=final.suffix if suffix is None else suffix, dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, _FILE_MODE)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
