"""A bundle's declared model is checked against its tensors before anything large is built
(issue 11 item 14), and the ONNX sidecar records the inference front-end (item 16)."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from r2n_audio.errors import ModelError
from r2n_audio.features.frontend import Frontend, build_frontend
from r2n_audio.inference.bundle import load_bundle, make_bundle, save_bundle
from r2n_audio.inference.embedder import Embedder
from r2n_audio.models import create_model


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def test_small_file_declaring_huge_sizes_fails_fast(tmp_path: Path) -> None:
    net = create_model("ecapa_tdnn_tiny")
    state = {k: v[:1].clone() if v.dim() else v for k, v in net.state_dict().items()}
    huge = make_bundle("ecapa_tdnn_tiny", {"channels": [100000] * 4 + [300000]},
                       {k: v for k, v in list(state.items())[:3]}, Frontend().config())
    save_bundle(huge, tmp_path / "huge.pt")
    assert (tmp_path / "huge.pt").stat().st_size < 8192
    before, start = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(ModelError, match="does not fit"):
        Embedder.from_pretrained(tmp_path / "huge.pt", device="cpu")
    # Building it would take ~10^11 parameters; checking it takes neither time nor memory.
    assert time.perf_counter() - start < 5.0 and _peak_rss_mb() - before < 200.0


def test_bad_declarations_are_model_errors(tiny_bundle_factory, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle_factory())
    for args, message in (({"no_such_argument": 3}, "does not take no_such_argument"),
                          ({"channels": "wide"}, "do not build")):
        save_bundle({**bundle, "model_args": args}, tmp_path / "bad.pt")
        with pytest.raises(ModelError, match=message):
            Embedder.from_pretrained(tmp_path / "bad.pt", device="cpu")
    first = next(iter(bundle["state_dict"]))
    wrong = {**bundle["state_dict"], first: torch.zeros(3, 3)}
    save_bundle({**bundle, "state_dict": wrong}, tmp_path / "shape.pt")
    with pytest.raises(ModelError, match=f"shape mismatches.*{first}"):
        Embedder.from_pretrained(tmp_path / "shape.pt", device="cpu")


def test_onnx_sidecar_records_the_inference_frontend(tmp_path: Path) -> None:
    """A bundle trained with dither 1.0: features rebuilt from the sidecar JSON must be the
    ones the embedder used (the training config's dither gave cosine 0.68)."""
    pytest.importorskip("onnxruntime")
    from r2n_audio.inference.export import export_model

    torch.manual_seed(0)
    net = create_model("ecapa_tdnn_tiny")
    training = Frontend(dither=1.0).config()
    save_bundle(make_bundle("ecapa_tdnn_tiny", {}, net.state_dict(), training),
                tmp_path / "m.pt")
    embedder = Embedder.from_pretrained(tmp_path / "m.pt", device="cpu")
    export_model(embedder, tmp_path / "m.onnx", "onnx")
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text())
    assert sidecar["frontend"]["dither"] == 0.0
    wave = 0.05 * torch.randn(1, 24000, generator=torch.Generator().manual_seed(2))
    rebuilt = build_frontend(sidecar["frontend"])  # as a user would, even in training mode
    with torch.no_grad():
        feats, _ = rebuilt(wave)
        used, _ = embedder.frontend(wave)
    np.testing.assert_allclose(feats.numpy(), used.numpy(), atol=1e-5)
