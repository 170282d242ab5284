"""``r2n-audio export``: writes the file and its description, prints the parity check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2n_audio.cli import main

from .test_embed import make_bundle_file

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_prints_parity(tmp_path: Path, capsys, fmt: str) -> None:
    model = make_bundle_file(tmp_path / "model.pt")
    out = tmp_path / f"model.{fmt}"
    assert main(["export", "--model", str(model), "--format", fmt, "-o", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("parity: max |diff| vs eager = ") and "ok" in lines[-1]
    assert float(lines[-1].split("= ")[1].split()[0]) <= 1e-4
    assert out.stat().st_size > 0
    assert json.loads(Path(f"{out}.json").read_text())["frontend"]["type"] == "kaldi"
    assert main(["export", "--model", str(model), "--format", fmt, "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_export_errors(tmp_path: Path, capsys) -> None:
    assert main(["export", "--model", str(tmp_path / "none.pt"), "--format", "onnx", "-o",
                 str(tmp_path / "m.onnx")]) == 2
    assert "no such model bundle" in capsys.readouterr().err
    assert main(["export", "--model", "x", "--format", "tflite", "-o", "y"]) == 2


def test_export_never_writes_over_its_model(tmp_path: Path, capsys) -> None:
    model = make_bundle_file(tmp_path / "model.pt")
    before = model.read_bytes()
    assert main(["export", "--model", str(model), "--format", "torchscript", "-o", str(model),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {model}: it is an input" in err[0]
    assert model.read_bytes() == before and not Path(f"{model}.json").exists()
    assert main(["export", "--model", str(model), "--format", "torchscript", "-o", "-"]) == 2
    assert "standard output ('-') takes text outputs only" in capsys.readouterr().err
