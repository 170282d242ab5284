"""ONNX (run by onnxruntime) and TorchScript exports against the eager Embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from r2n_audio.errors import ModelError
from r2n_audio.inference.embedder import Embedder
from r2n_audio.inference.export import export_model

ort = pytest.importorskip("onnxruntime")


def _batch(seed: int, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    waves = [0.1 * torch.randn(n, generator=gen) for n in sizes]
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor(sizes)


def _run(path: Path, fmt: str, x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return session.run(None, {names[0]: x.numpy(), names[1]: lengths.numpy()})[0]
    return torch.jit.load(str(path))(x, lengths).detach().numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("frontend", ["kaldi", "speechbrain"])
def test_waveform_in_graph_matches_eager(tiny_bundle_factory, tmp_path: Path, fmt: str,
                                         frontend: str) -> None:
    bundle = tiny_bundle_factory(frontend=frontend, mean=True, l2=True)
    path = tmp_path / f"model.{fmt}"
    report = export_model(Embedder.from_pretrained(bundle, device="cpu"), path, fmt,
                          with_frontend=True)
    assert report["max_abs_diff"] <= 1e-4
    x, lengths = _batch(0, (30000, 17000, 8000, 25000))  # batch and lengths unseen at export
    eager = Embedder.from_pretrained(bundle, device="cpu").embed_batch(x, lengths)
    assert np.abs(_run(path, fmt, x, lengths) - eager).max() <= 1e-4
    described = json.loads(Path(f"{path}.json").read_text())
    assert described["with_frontend"] and described["frontend"]["type"] == frontend


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("model", ["ecapa_tdnn_tiny", "resnet34_tiny"])
def test_features_in_graph_matches_eager(tiny_bundle_factory, tmp_path: Path, fmt: str,
                                         model: str) -> None:
    bundle = tiny_bundle_factory(model=model, frontend="kaldi", mean=True)
    embedder = Embedder.from_pretrained(bundle, device="cpu")
    path = tmp_path / f"model.{fmt}"
    export_model(embedder, path, fmt, with_frontend=False)
    x, lengths = _batch(1, (21000, 16000, 9000))
    # The documented front-end, rebuilt from the JSON beside the export, computes the inputs.
    from r2n_audio.features.frontend import build_frontend

    frontend = build_frontend(json.loads(Path(f"{path}.json").read_text())["frontend"]).eval()
    with torch.no_grad():
        feats, frames = frontend(x, lengths)
    eager = Embedder.from_pretrained(bundle, device="cpu").embed_batch(x, lengths)
    assert np.abs(_run(path, fmt, feats, frames) - eager).max() <= 1e-4


def test_failed_export_fails_clearly_and_keeps_old_file(tiny_bundle_factory, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous export")
    embedder = Embedder.from_pretrained(tiny_bundle_factory(frontend="kaldi"), device="cpu")

    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter exploded\nsecond line")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(ModelError, match="onnx export failed.*exporter exploded"):
        export_model(embedder, path, "onnx", with_frontend=True)
    assert path.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left