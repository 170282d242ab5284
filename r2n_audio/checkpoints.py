"""The one safe checkpoint reader: ``torch.load(weights_only=True)`` with named allow-lists.

Every file r2n-audio reads with torch (bundles, training checkpoints, other toolkits'
checkpoints) goes through :func:`read_checkpoint`. Nothing in a checkpoint is ever run:

- the weights-only unpickler accepts tensors, containers and plain Python values only;
- a few toolkits pickle their own small objects next to the weights (pyannote.audio's Lightning
  checkpoints hold a ``Specifications`` dataclass and two enums). Those types are allowed *by
  name*, per call, through an allow-list in :data:`ALLOW_LISTS`: each named global is replaced by
  an inert :class:`ForeignObject` that keeps the constructor arguments and the pickled state as
  data. The real class is never imported, so its code never runs either;
- every failure becomes one :class:`~r2n_audio.errors.ModelError` line naming the file: not
  found, a folder, empty, truncated, not a torch file, or a pickle that carries code (the
  offending global is named).

>>> state = read_checkpoint("avg_model.pt")                                 # doctest: +SKIP
>>> ckpt = read_checkpoint("pytorch_model.bin", allow="pyannote")           # doctest: +SKIP
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from r2n_audio.errors import ModelError

__all__ = ["ALLOW_LISTS", "ForeignObject", "read_checkpoint"]

#: Named allow-lists of foreign globals a checkpoint may reference (full dotted names).
ALLOW_LISTS: dict[str, tuple[str, ...]] = {
    # pyannote.audio's Model.on_save_checkpoint: checkpoint["pyannote.audio"]["specifications"]
    "pyannote": ("pyannote.audio.core.task.Specifications",
                 "pyannote.audio.core.task.Problem",
                 "pyannote.audio.core.task.Resolution"),
}


class ForeignObject:
    """Inert stand-in for an allow-listed foreign object.

    ``args`` holds what the pickle passed to the constructor (an enum's value), ``__dict__``
    the pickled state (a dataclass's fields); ``foreign_name`` the dotted name it replaces.
    """

    foreign_name = ""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k != "args"}
        return f"<{self.foreign_name} args={getattr(self, 'args', ())} {fields}>"


def _stand_ins(names: tuple[str, ...]) -> list[tuple[type, str]]:
    """One :class:`ForeignObject` subclass per allowed name, as torch's (class, name) pairs."""
    out = []
    for name in names:
        cls = type(name.rsplit(".", 1)[-1], (ForeignObject,), {"foreign_name": name})
        out.append((cls, name))
    return out


def read_checkpoint(path: str | os.PathLike, allow: str | None = None,
                    what: str = "checkpoint") -> Any:
    """Load a torch file on CPU without running anything it contains.

    Parameters
    ----------
    path : str or PathLike
        The file (``torch.save`` zip or legacy format).
    allow : str, optional
        Name of an allow-list in :data:`ALLOW_LISTS` whose globals are accepted as inert
        :class:`ForeignObject` instances (e.g. ``"pyannote"``).
    what : str
        What the file should be, for error messages ("checkpoint", "bundle").

    Returns
    -------
    object
        What the file holds: usually a dict of tensors or of such dicts.

    Raises
    ------
    ModelError
        One line naming the file: missing, a folder, empty, truncated, not a torch file, or a
        pickle that carries code or objects outside the allow-list (never run).
    """
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not a {what} file")
    if not path.is_file():
        raise ModelError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file, not a {what}")
    if allow is not None and allow not in ALLOW_LISTS:
        raise ValueError(f"unknown allow-list {allow!r}; known: {sorted(ALLOW_LISTS)}")
    stand_ins = _stand_ins(ALLOW_LISTS[allow]) if allow else []
    try:
        with torch.serialization.safe_globals(stand_ins), warnings.catch_warnings():
            # "Detected pickle protocol N": noise for the user; failures are reported below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelError(f"{path}: refused to load: {_unsafe_reason(str(err))}") from None
    except (EOFError, zipfile.BadZipFile) as err:
        raise ModelError(f"{path}: truncated or corrupt {what} ({type(err).__name__})") from None
    except RuntimeError as err:
        text = str(err)
        if "central directory" in text or "failed reading" in text or "file_size" in text:
            raise ModelError(f"{path}: truncated or corrupt {what} (the torch zip archive is "
                             f"incomplete)") from None
        raise ModelError(f"{path}: not a readable torch {what} ({_first_line(text)})") from None
    except (KeyError, ValueError, OSError, TypeError, AttributeError) as err:
        raise ModelError(f"{path}: not a torch {what} ({type(err).__name__}: "
                         f"{_first_line(str(err))})") from None


def _unsafe_reason(message: str) -> str:
    """The part of torch's long weights-only message that says what was refused."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return (f"the pickle carries code or objects that are not plain weights "
                f"(global {found.group(1)}); nothing was run")
    detail = message.split("WeightsUnpickler error:", 1)[-1]
    return (f"the pickle carries code or objects that are not plain weights "
            f"({_first_line(detail) or 'unsupported pickle'}); nothing was run")


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][:160] if lines else ""
