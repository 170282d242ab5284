"""The mini recipe: a smoke run with a tiny budget (default suite) and the full run (slow)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "recipes" / "mini" / "run.py"
KEYS = {"eer", "min_dcf_0.01", "min_dcf_0.05", "model", "params", "train_seconds",
        "baseline_eer", "eer_no_asnorm", "corpus_seconds", "total_seconds"}


@pytest.mark.recipe
def test_mini_recipe_smoke(tiny_corpus, tmp_path, capsys):
    main = runpy.run_path(str(RUN))["main"]
    results = main(["--data", str(tiny_corpus), "--exp", str(tmp_path / "exp"), "--quiet",
                    "--cohort-utts", "2", "--",
                    "--trainer.max_epochs=1", "--trainer.accelerator=cpu",
                    "--model.backbone=ecapa_tdnn_tiny", "--model.backbone_args={}",
                    "--data.batch_size=8", "--data.num_workers=0"])
    saved = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert KEYS <= set(saved) and saved["model"] == "ecapa_tdnn_tiny"
    assert 0.0 <= saved["eer"] <= 100.0 and saved["eer"] == results["eer"]
    for name in ("det.png", "test_embeddings.npz", "model.pt", "config.yaml"):
        assert (tmp_path / "exp" / name).stat().st_size > 0

    from r2n_audio.inference.embedder import Embedder

    embedder = Embedder.from_pretrained(tmp_path / "exp" / "model.pt", device="cpu")
    wav = next((tiny_corpus / "wav").rglob("*.wav"))
    assert embedder.embed_file(wav).shape == (embedder.embed_dim,)

    # The bundle carries the EER threshold of plain cosine scoring, so verify can decide.
    from r2n_audio.cli import main as cli

    assert cli(["verify", str(wav), str(wav), "--model", str(tmp_path / "exp" / "model.pt")]) == 0
    out = capsys.readouterr().out
    assert "decision: same speaker" in out
    assert "(bundle, calibrated on synthetic voices: mini corpus" in out
    assert f"{saved['threshold_eer_no_asnorm']:.6f}"[:6] in out


@pytest.mark.slow
@pytest.mark.recipe
def test_mini_recipe_reaches_its_targets(tmp_path):
    """From a clean start (corpus made here): EER <= 8% and <= baseline / 4, in < 10 min."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(RUN), "--data", str(tmp_path / "mini"),
                    "--exp", str(tmp_path / "exp"), "--quiet"], check=True, cwd=ROOT, env=env,
                   timeout=900)
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert results["baseline_eer"] >= 15.0
    assert results["eer"] <= 8.0
    assert results["eer"] <= results["baseline_eer"] / 4
    assert results["corpus_seconds"] + results["train_seconds"] < 600
