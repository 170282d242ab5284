"""Exceptions for user input: each message names the file (and line) and the fix.

The CLI turns any :class:`R2NError` into one line on stderr and exit code 2 (or 1 where some
inputs failed and others succeeded); library code raises, never calls ``exit()``.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["R2NError", "AudioError", "DataFormatError", "ModelError", "OutputError"]


class R2NError(Exception):
    """Base class of every error caused by user input (files, options, models)."""


class AudioError(R2NError):
    """An audio file is missing, unreadable, empty, non-finite or too short."""

    def __init__(self, path: str | PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataFormatError(R2NError):
    """A data file (wav.scp, utt2spk, trials, embeddings, config) is malformed.

    Parameters
    ----------
    path : str or PathLike
        The offending file.
    problem : str
        What is wrong, with the fix where there is one.
    line : int, optional
        1-based line number, when the problem is on one line.
    """

    def __init__(self, path: str | PathLike, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ModelError(R2NError):
    """A model name, bundle or checkpoint cannot be used (unknown name, wrong kind, bad keys)."""


class OutputError(R2NError):
    """An output cannot be written: a read-only or full folder, or a path that is an input."""

    def __init__(self, path: str | PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot write {self.path}: {problem}")

    def __reduce__(self):  # rebuilt from both fields when raised in a worker process
        return type(self), (self.path, self.problem)
