"""``r2n-audio embed`` never writes a non-finite or silent "speaker" (issue 11 items 5 and 7):
such files are reported failed, with their reason, in the failed list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from r2n_audio.cli import main
from r2n_audio.data.embeddings import load_embeddings

from .test_embed import make_bundle_file


def _embed(folder: Path, model: Path, out: Path) -> int:
    return main(["embed", str(folder), "--model", str(model), "-o", str(out), "--device", "cpu",
                 "--quiet"])


def test_silent_file_is_failed_not_embedded(make_wav, tmp_path: Path, capsys) -> None:
    make_wav("audio/speech.wav", seconds=1.0)
    make_wav("audio/zeros.wav", data=np.zeros(16000))
    model = make_bundle_file(tmp_path / "model.pt")
    assert _embed(tmp_path / "audio", model, tmp_path / "emb.npz") == 1
    assert sorted(load_embeddings(tmp_path / "emb.npz")) == ["speech"]
    assert "zeros.wav: no signal" in capsys.readouterr().err


def test_nan_model_writes_no_vector(make_wav, tmp_path: Path, capsys) -> None:
    from r2n_audio.inference.bundle import load_bundle, save_bundle

    make_wav("audio/speech.wav", seconds=1.0)
    bundle = load_bundle(make_bundle_file(tmp_path / "model.pt"))
    bundle["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                            for k, v in bundle["state_dict"].items()}
    save_bundle(bundle, tmp_path / "nan.pt")
    assert _embed(tmp_path / "audio", tmp_path / "nan.pt", tmp_path / "emb") != 0
    assert not list((tmp_path / "emb").rglob("*.npy"))
    assert "NaN or Inf" in capsys.readouterr().err
