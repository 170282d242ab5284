"""Atomic writes: the final name only ever holds a complete file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from r2n_audio.atomic import atomic_path, atomic_write_text


def test_success_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["out.txt"]


def test_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half writ")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_mode_is_what_open_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # open() applies the umask to 0o666
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode


def test_suffix_for_writers_that_pick_a_format(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x.bin", suffix=".npy") as tmp:
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path
        tmp.write_bytes(b"1")
    assert (tmp_path / "x.bin").read_bytes() == b"1"
