"""Progress of long jobs: a bar on a terminal, a quiet line every few seconds in a log.

Every command with a long loop (``embed``, ``make-corpus``, ``prepare``, ``diarize``) reports
through :class:`Progress` and takes the one flag :func:`add_quiet_argument` adds, ``--quiet``.
A tqdm bar redrawn in place is only readable on a terminal; written to a file it becomes
thousands of carriage-return fragments, so a log (stderr not a terminal) gets one plain line
every ``interval`` seconds instead, and a job shorter than that prints nothing at all.

>>> import io
>>> log = io.StringIO()
>>> with Progress(3, "embed", unit="file", stream=log, interval=0.0) as progress:
...     for _ in range(3):
...         progress.update()
>>> log.getvalue().splitlines()[-1].startswith("embed: 3/3 files (100%)")
True
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

__all__ = ["Progress", "add_quiet_argument"]


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet`` (``args.quiet``): no progress output, results and errors still printed.

    ``--no-progress``, the name ``embed`` used before, is kept as a hidden alias.
    """
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress output (a bar on a terminal, a line every few "
                             "seconds in a log)")
    parser.add_argument("--no-progress", dest="quiet", action="store_true",
                        help=argparse.SUPPRESS)


class Progress:
    """Count finished items of a job and show it as the output stream allows.

    Parameters
    ----------
    total : int
        Items expected.
    desc : str
        What the job is, first on each line (``"embed"``, ``"make-corpus"``).
    unit : str
        One item (``"file"``, ``"utt"``); an ``s`` is appended for counts.
    quiet : bool
        Show nothing (messages passed to :meth:`write` are still printed).
    stream : file, optional
        Where to write; standard error by default (read when the object is made).
    interval : float
        Seconds between two lines when ``stream`` is not a terminal.
    """

    def __init__(self, total: int, desc: str, unit: str = "file", quiet: bool = False,
                 stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self._start = self._last = time.monotonic()
        self._lines, self._last_done = 0, -1
        self._bar = None
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        if not quiet and is_tty:
            from tqdm import tqdm  # lazy: `r2n-audio --help` does not need it

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True)
        self._log = not quiet and not is_tty

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Record ``n`` more finished items."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._log and time.monotonic() - self._last >= self.interval:
            self._line()

    def write(self, message: str) -> None:
        """Print one message line without breaking the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """Remove the bar; in a log, end with a last line if any line was printed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines and self._last_done != self.done:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = ""
        if 0 < self.done < self.total:
            left = f", about {elapsed * (self.total - self.done) / self.done:.0f} s left"
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}s{pct}, {elapsed:.0f} s"
              f"{left}", file=self.stream, flush=True)
        self._last, self._last_done = now, self.done
        self._lines += 1
