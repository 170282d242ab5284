"""Argument types shared by the subcommands: a bad value is a one-line usage error (exit 2).

Python's ``float()`` accepts ``nan`` and ``inf`` and ``int()`` accepts negatives; passed on,
``--batch-seconds nan`` or ``--seed -1`` end in a traceback deep inside numpy or torch. These
types refuse them when the command line is parsed, naming the value and the accepted range.

>>> positive_float("2.5")
2.5
>>> positive_float("nan")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a finite number > 0, got 'nan'
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

__all__ = ["at_least", "float_at_least", "positive_int", "non_negative_int", "positive_float",
           "non_negative_float", "probability", "cosine_or_off", "device", "DEVICES"]

DEVICES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer type accepting values ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def _finite(text: str, ok: Callable[[float], bool], what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number {what}, got {text!r}")
    return value


def float_at_least(minimum: float) -> Callable[[str], float]:
    """A finite float type accepting values ``>= minimum``."""

    def parse(text: str) -> float:
        return _finite(text, lambda v: v >= minimum, f">= {minimum:g}")

    parse.__name__ = f"number >= {minimum:g}"
    return parse


def positive_float(text: str) -> float:
    """A finite float ``> 0`` (seconds, sizes)."""
    return _finite(text, lambda v: v > 0, "> 0")


def non_negative_float(text: str) -> float:
    """A finite float ``>= 0`` (tolerances)."""
    return _finite(text, lambda v: v >= 0, ">= 0")


def probability(text: str) -> float:
    """A float strictly between 0 and 1 (priors)."""
    return _finite(text, lambda v: 0 < v < 1, "in (0, 1)")


def cosine_or_off(text: str) -> float | None:
    """A cosine threshold in [-1, 1], or ``off`` (None).

    >>> cosine_or_off("off") is None, cosine_or_off("0.5")
    (True, 0.5)
    """
    if text.strip().lower() == "off":
        return None
    return _finite(text, lambda v: -1 <= v <= 1, "in [-1, 1] (or off)")


def device(text: str) -> str:
    """A device name the embedder accepts: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {DEVICES}")
    return text
