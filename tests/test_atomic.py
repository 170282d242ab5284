"""Safe writes: the final name only ever holds a complete file, special files are written
through, errors name the final path, and no output replaces an input."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from r2n_audio.atomic import (atomic_path, atomic_write_text, is_special_file,
                              refuse_overwriting_inputs)
from r2n_audio.errors import OutputError


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


# --- special files, standard output, errors naming the final path ---------------------------

def _read_fifo(path: Path, out: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.append(path.read_text()), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("through_link", [False, True])
def test_fifo_is_written_through_not_replaced(tmp_path: Path, through_link: bool) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    target = fifo
    if through_link:
        target = tmp_path / "link"
        target.symlink_to(fifo)
    got: list[str] = []
    reader = _read_fifo(fifo, got)
    atomic_write_text(target, "hello\n")
    reader.join(timeout=10)
    assert got == ["hello\n"]
    assert is_special_file(fifo) and not fifo.is_symlink()
    assert target.is_symlink() == through_link
    assert sorted(os.listdir(tmp_path)) == sorted({"pipe", target.name})  # no temporary


def test_a_full_device_is_a_one_line_output_error(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    # Through a link: a regression that renames over it then replaces the link, not /dev/full.
    full = tmp_path / "full"
    full.symlink_to("/dev/full")
    with pytest.raises(OutputError, match=rf"^cannot write {full}: No space left on device"):
        atomic_write_text(full, "x" * 100_000)
    assert full.is_symlink()


def test_symlink_to_a_regular_file_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_dash_is_standard_output_for_text_only(tmp_path: Path, capsys) -> None:
    atomic_write_text("-", "a b 0.5\n")
    assert capsys.readouterr().out == "a b 0.5\n"
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    with pytest.raises(OutputError, match="text outputs only"):
        with atomic_path("-"):
            pass


def test_os_errors_name_the_final_path_not_the_temporary(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as info:
        atomic_write_text(tmp_path / "file" / "out.txt", "x")  # a file where a folder should be
    assert str(info.value).startswith(f"cannot write {tmp_path / 'file' / 'out.txt'}: ")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError, match="folder: Is a directory"):
        atomic_write_text(tmp_path / "folder", "x")
    assert os.listdir(tmp_path / "folder") == []


def test_output_error_survives_pickling() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(OutputError("/x", "No space left on device")))
    assert str(err) == "cannot write /x: No space left on device" and err.path == "/x"


# --- refuse_overwriting_inputs ------------------------------------------------------------------

def test_refuses_an_output_that_is_an_input(tmp_path: Path) -> None:
    scp = tmp_path / "wav.scp"
    scp.write_text("a a.wav\n")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "sub" / "alias.scp"
    link.symlink_to(scp)
    hard = tmp_path / "hard.scp"
    os.link(scp, hard)
    for output in (scp, tmp_path / "sub" / ".." / "wav.scp", link, hard):
        with pytest.raises(OutputError, match=r"it is an input of this command"):
            refuse_overwriting_inputs([tmp_path / "new.ark", output], [scp])
    assert scp.read_text() == "a a.wav\n"


def test_refuses_outputs_in_input_folders_and_inputs_in_removed_folders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.ckpt").write_bytes(b"weights")
    with pytest.raises(OutputError, match="lies in the input folder"):
        refuse_overwriting_inputs([src / "model.ckpt"], [src])
    refuse_overwriting_inputs([src / "bundle.pt"], [src])  # does not exist: nothing replaced
    staging = tmp_path / "emb.npz.partial"
    staging.mkdir()
    (staging / "wav.scp").write_text("a a.wav\n")
    with pytest.raises(OutputError, match="holds the input"):
        refuse_overwriting_inputs([staging], [staging / "wav.scp"])


def test_fresh_outputs_never_look_at_the_inputs(tmp_path: Path) -> None:
    def inputs():
        raise AssertionError("inputs were read although no output exists")
        yield

    refuse_overwriting_inputs([tmp_path / "a.ark", tmp_path / "a.scp", None, "-"], inputs())


def test_special_files_never_collide(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    refuse_overwriting_inputs([fifo, "/dev/null"], [fifo, "/dev/null"])
