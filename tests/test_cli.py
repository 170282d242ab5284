"""The ``r2n-audio`` dispatcher: one line and exit 2 for OSErrors, a quiet end on a closed pipe,
and subcommands that import nothing heavy until they run."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from r2n_audio import cli
from r2n_audio.data.embeddings import save_embeddings


def _fake_command(monkeypatch, run) -> None:
    module = types.SimpleNamespace(HELP="a test command", add_arguments=lambda p: None, run=run)
    monkeypatch.setattr(cli, "_command_modules", lambda: {"fake": module})


def _raise(err: BaseException):
    def run(args):
        raise err

    return run


@pytest.mark.parametrize("err, line", [
    (PermissionError(13, "Permission denied", "/ro/emb"), "/ro/emb: Permission denied"),
    (OSError(28, "No space left on device", "/full/x.npz"), "/full/x.npz: No space left on device"),
    (OSError(30, "Read-only file system", "/a", None, "/b"), "/a -> /b: Read-only file system"),
])
def test_an_os_error_is_one_line_and_exit_2(monkeypatch, capsys, err, line) -> None:
    _fake_command(monkeypatch, _raise(err))
    assert cli.main(["fake"]) == 2
    assert capsys.readouterr().err == f"r2n-audio fake: error: {line}\n"


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys) -> None:
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    def run(args):
        print('{"eer": 1.0}')
        return 0

    _fake_command(monkeypatch, run)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["fake"]) == 141
    assert capsys.readouterr().err == ""


def test_score_into_a_closed_pipe_through_the_console_script(tmp_path: Path, rng) -> None:
    save_embeddings(tmp_path / "emb", {k: rng.standard_normal(4) for k in ("a", "b", "c")})
    (tmp_path / "trials").write_text("a b target\na c nontarget\n")
    script = Path(sys.executable).with_name("r2n-audio")
    proc = subprocess.Popen([str(script), "score", str(tmp_path / "trials"), "--embeddings",
                             str(tmp_path / "emb"), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command prints (`| head -c 0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == "", err


def test_every_command_is_listed_and_help_imports_no_lightning() -> None:
    code = ("import sys; from r2n_audio import cli; cli._build_parser(cli._command_modules()); "
            "print(sorted(m for m in ('pytorch_lightning', 'lightning') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    assert {"embed", "score", "verify", "export", "import", "prepare", "make-corpus",
            "average"} <= set(cli.COMMANDS)


def test_average_is_a_subcommand(capsys) -> None:
    assert cli.main(["average", "--help"]) == 0
    assert "-o AVG.ckpt" in capsys.readouterr().out




def _scoring_inputs(tmp_path: Path, rng) -> list[str]:
    save_embeddings(tmp_path / "emb.npz", {k: rng.standard_normal(4) for k in ("a", "b", "c")})
    (tmp_path / "trials").write_text("a b target\na c nontarget\n")
    return ["score", str(tmp_path / "trials"), "--embeddings", str(tmp_path / "emb.npz")]


def test_score_never_writes_over_its_inputs(tmp_path: Path, rng, capsys) -> None:
    args = _scoring_inputs(tmp_path, rng)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for option, target in (("--output", "trials"), ("--output", "emb.npz"),
                           ("--det", "trials"), ("--fit-calibration", "emb.npz")):
        assert cli.main([*args, option, str(tmp_path / target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"cannot write {tmp_path / target}: it is an input" in err[0]
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_score_output_dash_is_standard_output(tmp_path: Path, rng, capsys) -> None:
    assert cli.main([*_scoring_inputs(tmp_path, rng), "--output", "-", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out[:2]] == [["a", "b"], ["a", "c"]]
    assert not (tmp_path / "-").exists() and not Path("-").exists()


def test_score_output_in_a_read_only_folder_is_one_line(tmp_path: Path, rng, capsys,
                                                        monkeypatch) -> None:
    import errno
    import os

    args = _scoring_inputs(tmp_path, rng)
    real_mkstemp = __import__("tempfile").mkstemp

    def read_only(*a, dir=None, **k):  # root ignores permissions: refuse as a read-only mount
        if dir is not None and Path(dir) == tmp_path / "ro":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(dir) / "x"))
        return real_mkstemp(*a, dir=dir, **k)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr("tempfile.mkstemp", read_only)
    assert cli.main([*args, "--output", str(tmp_path / "ro" / "scores.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"r2n-audio score: error: cannot write {tmp_path / 'ro' / 'scores.txt'}: "
                   "Read-only file system"]


def test_score_output_through_a_link_to_a_fifo_is_written_through(tmp_path: Path, rng,
                                                                  capsys) -> None:
    import os
    import threading

    fifo, link = tmp_path / "fifo", tmp_path / "scores.txt"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    assert cli.main([*_scoring_inputs(tmp_path, rng), "--output", str(link)]) == 0
    reader.join(timeout=30)
    assert [line.split()[:2] for line in got[0].splitlines()] == [["a", "b"], ["a", "c"]]
    assert link.is_symlink() and not fifo.is_symlink() and not fifo.is_file()


def test_import_never_writes_over_a_file_of_its_source_folder(tmp_path: Path, capsys) -> None:
    src = tmp_path / "voxceleb_resnet34"
    src.mkdir()
    (src / "avg_model.pt").write_bytes(b"the checkpoint")
    assert cli.main(["import", "wespeaker", str(src), "-o", str(src / "avg_model.pt"),
                     "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lies in the input folder" in err[0]
    assert (src / "avg_model.pt").read_bytes() == b"the checkpoint"
