"""``r2n-audio verify``: score, decision, and which threshold decided."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from r2n_audio.cli import main
from r2n_audio.inference.embedder import Embedder

from .test_embed import make_bundle_file


@pytest.fixture
def pair(make_wav, tmp_path: Path) -> tuple[Path, Path, Path]:
    return (make_wav("a.wav", seconds=1.2), make_wav("b.wav", seconds=1.0),
            make_bundle_file(tmp_path / "model.pt"))


def _lines(capsys) -> dict[str, str]:
    out = capsys.readouterr().out.strip().splitlines()
    return dict(line.split(": ", 1) for line in out)


def test_threshold_decides(pair, capsys) -> None:
    a, b, model = pair
    emb = Embedder.from_pretrained(model, device="cpu").embed_files([a, b])
    cosine = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    assert main(["verify", str(a), str(b), "--model", str(model), "--threshold",
                 str(cosine - 0.01), "--device", "cpu"]) == 0
    lines = _lines(capsys)
    assert abs(float(lines["score"].split()[0]) - cosine) <= 1e-5
    assert lines["decision"] == "same speaker"
    assert lines["threshold"].endswith("(--threshold)")
    assert main(["verify", str(a), str(b), "--model", str(model), "--threshold",
                 str(cosine + 0.01)]) == 0
    assert _lines(capsys)["decision"] == "different speakers"


def test_calibration_gives_llr(pair, tmp_path: Path, capsys) -> None:
    a, b, model = pair
    calibration = tmp_path / "cal.json"
    calibration.write_text(json.dumps({"format": "r2n-audio-calibration", "version": 1,
                                       "prior": 0.5, "score_weight": 10.0, "bias": -2.0,
                                       "quality_weights": {}}))
    assert main(["verify", str(a), str(b), "--model", str(model), "--calibration",
                 str(calibration)]) == 0
    lines = _lines(capsys)
    score = float(lines["score"].split()[0])
    assert abs(float(lines["llr"]) - (10.0 * score - 2.0)) <= 1e-3
    assert lines["decision"] == ("same speaker" if 10.0 * score - 2.0 >= 0 else
                                 "different speakers")
    assert "LLR >= 0" in lines["threshold"]


def test_no_threshold_and_bad_inputs(pair, tmp_path: Path, capsys) -> None:
    a, b, model = pair
    assert main(["verify", str(a), str(b), "--model", str(model)]) == 0
    assert _lines(capsys)["decision"].startswith("none")
    missing = tmp_path / "missing.wav"
    assert main(["verify", str(a), str(missing), "--model", str(model), "--threshold", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.wav" in err[0]
    assert main(["verify", str(a), str(b), "--model", str(model), "--threshold", "0",
                 "--calibration", "x.json"]) == 2  # mutually exclusive
