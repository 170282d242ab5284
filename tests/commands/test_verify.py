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
                 str(cosine + 0.01)]) == 3  # a distinct exit status scripts can branch on
    assert _lines(capsys)["decision"] == "different speakers"


def test_bundle_threshold_says_where_it_was_calibrated(pair, tmp_path: Path, capsys) -> None:
    from r2n_audio.inference.bundle import load_bundle, save_bundle

    a, b, model = pair
    score = Embedder.from_pretrained(model, device="cpu").similarity(a, b)
    bundle = load_bundle(model)
    bundle["meta"] = {"threshold": score + 0.5,
                      "threshold_source": "synthetic voices: mini corpus"}
    save_bundle(bundle, tmp_path / "meta.pt")
    assert main(["verify", str(a), str(b), "--model", str(tmp_path / "meta.pt")]) == 3
    lines = _lines(capsys)
    assert lines["decision"] == "different speakers"
    assert lines["threshold"] == (f"{score + 0.5:g} (bundle, calibrated on synthetic voices: "
                                  f"mini corpus)")
    bundle["meta"] = {"threshold": score - 0.5}  # an older bundle: no source recorded
    save_bundle(bundle, tmp_path / "old.pt")
    assert main(["verify", str(a), str(b), "--model", str(tmp_path / "old.pt")]) == 0
    assert "not recorded" in _lines(capsys)["threshold"]
    # the Python API decides the same way
    decision = Embedder.from_pretrained(tmp_path / "meta.pt", device="cpu").verify(a, b)
    assert decision.same is False and abs(decision.score - score) <= 1e-6


def test_help_documents_exit_status(capsys) -> None:
    assert main(["verify", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "0 same speaker" in text and "3 different speakers" in text


@pytest.mark.parametrize("case", ["zeros", "dc"])
def test_silence_is_not_a_speaker(pair, make_wav, capsys, case) -> None:
    """Issue 11 item 5: `verify zeros.wav dc.wav` printed score 1.000 and "same speaker"."""
    a, _, model = pair
    silent = make_wav(f"{case}.wav", data=np.zeros(16000) + (0.2 if case == "dc" else 0.0))
    other = make_wav("dc2.wav", data=np.full(16000, -0.1))
    assert main(["verify", str(silent), str(other), "--model", str(model),
                 "--threshold", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no signal" in err[0] and f"{case}.wav" in err[0]


def test_nan_model_is_an_error_not_a_decision(pair, tmp_path: Path, capsys) -> None:
    import torch

    from r2n_audio.inference.bundle import load_bundle, save_bundle

    a, b, model = pair
    bundle = load_bundle(model)
    bundle["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                            for k, v in bundle["state_dict"].items()}
    save_bundle(bundle, tmp_path / "nan.pt")
    assert main(["verify", str(a), str(b), "--model", str(tmp_path / "nan.pt"),
                 "--threshold", "0"]) == 2
    err = capsys.readouterr()
    assert "NaN" in err.err and "score" not in err.out


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
