"""Safe writes: atomic for regular files, written through for special files, never over an input.

:func:`atomic_path` writes to a temporary name in the same folder, then renames: a crash or a
killed job never leaves a partial file under a final name, and an existing file is only replaced
once the new one is complete. A path that names a special file (a FIFO, ``/dev/stdout``, a
device, or a symlink to one of those) is written through instead: renaming over it would
replace the pipe or the device node with a regular file. A symlink to a regular file keeps its
link: the file it points to is replaced. ``-`` means standard output for text
(:func:`atomic_write_text`).

:func:`refuse_overwriting_inputs` is the check every command runs before writing: no output may
be one of its own inputs (``embed data/wav.scp -o data/wav.ark`` would replace the list it
reads with the archive's index).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from r2n_audio.errors import OutputError

__all__ = ["STDOUT", "atomic_path", "atomic_write_text", "is_special_file",
           "refuse_overwriting_inputs", "remove_stale_temps"]

STDOUT = "-"
"""The output name meaning standard output."""

def _default_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask)."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


# mkstemp makes 0600 files; renamed outputs should have the mode any other new file gets.
_FILE_MODE = _default_mode()


def is_special_file(path: str | os.PathLike) -> bool:
    """True for an existing path (symlinks followed) that is neither a regular file nor a
    folder: a FIFO, a character or block device, a socket."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _error(path: str | os.PathLike, err: OSError) -> OutputError:
    return OutputError(path, err.strerror or str(err))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Parameters
    ----------
    path : str or PathLike
        Final destination. Its folder is created if missing. A special file (FIFO, device,
        or a symlink to one) is yielded itself, to be written through.
    suffix : str, optional
        Suffix of the temporary file (defaults to ``path``'s own), for writers such as
        ``np.save`` or matplotlib that pick a format from the extension.

    Raises
    ------
    OutputError
        ``path`` is ``-`` (standard output takes text only, see :func:`atomic_write_text`), or
        an ``OSError`` while writing (read-only folder, disk full, a folder in the way): the
        message names ``path``, not the temporary name.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "x.npy")) as tmp:
    ...     np.save(tmp, np.zeros(2))
    >>> sorted(os.listdir(d))
    ['x.npy']
    """
    if os.fspath(path) == STDOUT:
        raise OutputError(STDOUT, "standard output ('-') takes text outputs only; give a file "
                                  "name")
    if is_special_file(path):
        try:
            yield Path(path)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise _error(path, err) from err
        return
    # realpath: through a symlink, replace the file it points to and keep the link.
    final = Path(os.path.realpath(path))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent,
                                        suffix=final.suffix if suffix is None else suffix)
        os.close(fd)
    except OSError as err:
        raise _error(path, err) from None
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield tmp
        os.replace(tmp, final)
    except BrokenPipeError:
        raise
    except OSError as err:
        raise _error(path, err) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8); ``-`` writes to standard output."""
    if os.fspath(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:  # a FIFO opens for writing, as a file does
            f.write(text)


def _identity(path: Path) -> tuple[int, int, bool] | None:
    """(device, inode, is a folder) of an existing regular file or folder, else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return None  # pipes and devices are written through, never replaced
    return st.st_dev, st.st_ino, stat.S_ISDIR(st.st_mode)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def refuse_overwriting_inputs(outputs: Iterable[str | os.PathLike | None],
                              inputs: Iterable[str | os.PathLike | None]) -> None:
    """Raise :class:`OutputError` when an output would write over one of the inputs.

    Parameters
    ----------
    outputs : iterable of path or None
        Every path the command will write, replace or remove: files, companions (the ``.scp``
        of an ``.ark``), lists of failures, and folders it removes (with what they hold).
        ``None`` and ``-`` are skipped.
    inputs : iterable of path or None
        Every path the command reads. A folder stands for every file in it, so an existing
        output inside an input folder is refused too.

    Notes
    -----
    Paths are compared by identity (device and inode), so a symlink or a hard link to an input
    is caught; special files (pipes, devices) are written through and never collide. When no
    output exists yet, nothing can be overwritten and the inputs are not even looked at, so a
    fresh run over a million files costs nothing.
    """
    existing = {}
    for out in outputs:
        if out is not None and os.fspath(out) != STDOUT:
            ident = _identity(Path(out))
            if ident is not None:
                existing[ident[:2]] = (Path(out), ident[2])
    if not existing:
        return
    out_dirs = [(out, _real(out)) for out, is_dir in existing.values() if is_dir]
    for item in inputs:
        if item is None or os.fspath(item) == STDOUT:
            continue
        inp = Path(item)
        ident = _identity(inp)
        if ident is None:
            continue
        if ident[:2] in existing:
            raise OutputError(existing[ident[:2]][0], f"it is an input of this command "
                                                      f"({inp}); choose another output")
        if ident[2]:
            for out, _ in existing.values():
                if _real(out).is_relative_to(_real(inp)):
                    raise OutputError(out, f"it lies in the input folder {inp}, whose files "
                                           "are read; choose another output")
        for out, real in out_dirs:
            if _real(inp).is_relative_to(real):
                raise OutputError(out, f"this folder is replaced or removed and holds the "
                                       f"input {inp}; choose another output")


def remove_stale_temps(folder: str | os.PathLike, suffix: str) -> None:
    """Remove the hidden temporaries (``.<name>.*<suffix>``) that a killed run's atomic writes
    left anywhere below ``folder``, so a resumed run never mistakes one for a result."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.rglob(f".*{suffix}"):
            tmp.unlink(missing_ok=True)
