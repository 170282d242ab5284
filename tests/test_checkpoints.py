"""The one checkpoint reader: plain weights load, code never runs, every failure is one line."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest
import torch

from r2n_audio.checkpoints import ForeignObject, read_checkpoint
from r2n_audio.errors import ModelError

_RAN: list[str] = []


def _record(text: str) -> None:  # what a malicious pickle would call
    _RAN.append(text)


class _Payload:
    def __reduce__(self):
        return (_record, ("code ran",))


def test_plain_weights_load(tmp_path: Path) -> None:
    torch.save({"w": torch.arange(3.0), "meta": {"n": 1}}, tmp_path / "ok.pt")
    out = read_checkpoint(tmp_path / "ok.pt")
    assert torch.equal(out["w"], torch.arange(3.0)) and out["meta"] == {"n": 1}


@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_with_code_is_refused_and_never_run(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": _Payload()}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ModelError, match=r"evil.pt: refused to load.*global .*_record.*nothing "
                                         r"was run"):
        read_checkpoint(path)
    assert _RAN == []


def test_raw_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"x": _Payload()}))
    with pytest.raises(ModelError, match="refused to load"):
        read_checkpoint(path)
    assert _RAN == []


def test_failures_are_one_line_naming_the_file(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1000)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello\n")
    cases = {"cut.pt": "truncated", "empty.pt": "empty file", "text.pt": "not a torch checkpoint",
             "missing.pt": "not found", ".": "is a folder"}
    for name, problem in cases.items():
        with pytest.raises(ModelError) as info:
            read_checkpoint(tmp_path / name)
        message = str(info.value)
        assert problem in message and len(message.splitlines()) == 1, message
        assert str(tmp_path / name).rstrip("/.") in message


class Problem(Enum):  # stands for pyannote.audio.core.task.Problem
    REPRESENTATION = 3


@dataclass
class Specifications:  # stands for pyannote.audio.core.task.Specifications
    problem: Problem
    duration: float


def test_allow_list_admits_named_types_as_inert_data(tmp_path: Path, monkeypatch) -> None:
    # Pickle under pyannote's names without needing pyannote: the classes claim its module.
    monkeypatch.setattr(Problem, "__module__", "pyannote.audio.core.task")
    monkeypatch.setattr(Specifications, "__module__", "pyannote.audio.core.task")
    import sys
    import types

    fake = types.ModuleType("pyannote.audio.core.task")
    fake.Problem, fake.Specifications = Problem, Specifications
    monkeypatch.setitem(sys.modules, "pyannote.audio.core.task", fake)
    path = tmp_path / "pyannote.bin"
    torch.save({"state_dict": {"w": torch.ones(2)},
                "pyannote.audio": {"specifications": Specifications(Problem.REPRESENTATION, 5.0)}},
               path)
    with pytest.raises(ModelError, match="global pyannote.audio.core.task"):
        read_checkpoint(path)
    loaded = read_checkpoint(path, allow="pyannote")
    spec = loaded["pyannote.audio"]["specifications"]
    assert isinstance(spec, ForeignObject) and spec.foreign_name.endswith("Specifications")
    assert spec.duration == 5.0 and spec.problem.args == (3,)
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_allow_list_does_not_admit_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.bin"
    torch.save({"x": _Payload(), "os": os.getcwd()}, path)
    with pytest.raises(ModelError, match="refused to load"):
        read_checkpoint(path, allow="pyannote")
    assert _RAN == []
