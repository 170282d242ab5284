"""The ``r2n-audio`` console script: one entry point, one module per subcommand.

Each subcommand lives in :mod:`r2n_audio.commands` as a module exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports (torch, models) happen inside
``run`` so that ``r2n-audio --help`` stays fast.

Exit codes: 0 ok, 1 some inputs failed (the others were processed), 2 usage or fatal input
error, 3 ``verify`` decided "different speakers". A user-input error prints one line on stderr, never a traceback; so does an ``OSError``
(a read-only or full output folder), naming the path. A reader that closes the pipe early
(``r2n-audio score ... --json | head -c 10``) ends the command quietly with 141 (128 + SIGPIPE,
what a shell reports for a command killed by a closed pipe), as the Python documentation
advises for SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from r2n_audio import __version__
from r2n_audio.errors import R2NError

__all__ = ["main", "COMMANDS"]

# name -> module under r2n_audio.commands; the order is the order of `r2n-audio --help`.
COMMANDS: dict[str, str] = {
    "embed": "embed",
    "score": "score",
    "verify": "verify",
    "export": "export",
    "import": "import_",
    "prepare": "prepare",
    "make-corpus": "make_corpus",
    "make-conversations": "make_conversations",
    "diarize": "diarize",
    "average": "average",
}

_BROKEN_PIPE = 141


def _command_modules() -> dict[str, object]:
    return {name: importlib.import_module(f"r2n_audio.commands.{module}")
            for name, module in COMMANDS.items()}


def _build_parser(modules: dict[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r2n-audio", description="Speaker verification with Res2Net backbones."
    )
    parser.add_argument("--version", action="version", version=f"r2n-audio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in modules.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _os_error(err: OSError) -> str:
    """One line for an ``OSError`` no command turned into an :class:`R2NError` (writes
    through :mod:`r2n_audio.atomic` already say ``cannot write PATH: reason``)."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return reason
    names = [err.filename] + ([err.filename2] if err.filename2 is not None else [])
    return f"{' -> '.join(map(str, names))}: {reason}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again
    (the recipe of the Python documentation's note on SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing will be flushed to a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``r2n-audio`` with ``argv`` (defaults to ``sys.argv[1:]``) and return the exit code."""
    parser = _build_parser(_command_modules())
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = int(args._run(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        _silence_stdout()
        return _BROKEN_PIPE
    except OSError as err:
        print(f"r2n-audio {args.command}: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except R2NError as err:
        print(f"r2n-audio {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"r2n-audio {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
