"""Export an :class:`~r2n_audio.inference.embedder.Embedder` to ONNX or TorchScript.

The exported graph takes a padded batch and its lengths, with dynamic batch and time axes:

- ``with_frontend=True``: ``waveform (B, N) float32`` in [-1, 1] at the bundle's sample rate and
  ``lengths (B,) int64`` samples -> ``embedding (B, D)``. The fbank front-end (Kaldi or SpeechBrain)
  is inside the graph (on the export path its FFT becomes a float64 DFT matmul, since ONNX has
  no complex FFT every runtime runs).
- ``with_frontend=False`` (default): ``feats (B, T, F) float32`` and ``lengths (B,) int64``
  frames -> ``embedding (B, D)``; the front-end to compute ``feats`` is described in a JSON file
  written beside the export (``<file>.json``: its config, which :func:`~r2n_audio.features.
  frontend.build_frontend` rebuilds).

Both include the bundle's embedding normalisation (mean subtraction, L2). Neither windows long
inputs: the eager :class:`Embedder` averages 20 s windows, an exported graph sees what it is given.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from r2n_audio.atomic import atomic_path, atomic_write_text
from r2n_audio.errors import ModelError
from r2n_audio.features.frontend import inference_frontend_config
from r2n_audio.inference.embedder import Embedder

__all__ = ["EmbeddingGraph", "export_model", "FORMATS"]

FORMATS = ("onnx", "torchscript")


class EmbeddingGraph(nn.Module):
    """Front-end (optional) + network + embedding normalisation, as one traceable module.

    ``forward(x, lengths) -> (B, D)``: ``x`` is ``(B, N)`` waveforms with a front-end, else
    ``(B, T, F)`` features; ``lengths`` the valid samples or frames.
    """

    def __init__(self, embedder: Embedder, with_frontend: bool) -> None:
        super().__init__()
        self.frontend = embedder.frontend if with_frontend else None
        self.model = embedder.model
        mean = embedder.embedding_mean
        self.register_buffer("mean", torch.zeros(embedder.embed_dim) if mean is None
                             else mean.detach().cpu().float().clone())
        self.l2 = embedder.l2_normalize

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.frontend is not None:
            x, lengths = self.frontend(x, lengths)
        emb = self.model(x, lengths) - self.mean
        return nn.functional.normalize(emb, dim=1) if self.l2 else emb


def _example(graph: EmbeddingGraph, sizes: tuple[int, ...], feat_dim: int,
             seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random padded batch with lengths ``sizes`` (samples with a front-end, else frames)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(sizes, dtype=torch.long)
    if graph.frontend is not None:
        x = 0.1 * torch.randn(len(sizes), max(sizes), generator=gen)
    else:
        x = torch.randn(len(sizes), max(sizes), feat_dim, generator=gen)
    return x, lengths


def _export_onnx(graph: EmbeddingGraph, example: tuple, path: Path, opset: int) -> None:
    time_axis = {0: "batch", 1: "time"}
    names = ["waveform" if graph.frontend is not None else "feats", "lengths"]
    torch.onnx.export(graph, example, str(path), input_names=names,
                      output_names=["embedding"], opset_version=opset, dynamo=False,
                      dynamic_axes={names[0]: time_axis, "lengths": {0: "batch"},
                                    "embedding": {0: "batch"}})


def _run_onnx(path: Path, x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in session.get_inputs()], [x.numpy(), lengths.numpy()]))
    return session.run(None, feeds)[0]


def _export_torchscript(graph: EmbeddingGraph, example: tuple, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(graph, example, check_trace=False)
    traced.save(str(path))


def export_model(embedder: Embedder, path: str | os.PathLike, format: str = "onnx",
                 with_frontend: bool = False, opset: int = 17,
                 frontend_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export, reload, and check parity against eager on a random input of new shape.

    Parameters
    ----------
    embedder : Embedder
        What to export (on any device; the export runs on CPU).
    path : str or PathLike
        Output file; ``<path>.json`` describing the inputs is written beside it.
    format : {"onnx", "torchscript"}
    with_frontend : bool
        Waveforms in (front-end inside) instead of features in.
    opset : int
        ONNX opset.
    frontend_config : dict, optional
        The front-end config recorded in the JSON (default: ``embedder.frontend.config()``).

    Returns
    -------
    report : dict
        ``{"path", "format", "with_frontend", "max_abs_diff", "inputs"}``; ``max_abs_diff`` is
        max |exported - eager| over a (3, ...) batch of lengths unseen at export time.
    """
    if format not in FORMATS:
        raise ModelError(f"export format must be one of {FORMATS}, got {format!r}")
    path = Path(path)
    embedder.model.cpu().eval()
    embedder.frontend.cpu().eval()
    embedder.device = torch.device("cpu")
    graph = EmbeddingGraph(embedder, with_frontend).eval()
    feat_dim = int(embedder.model.feat_dim)
    unit = embedder.sample_rate if with_frontend else 100  # about one second
    example = _example(graph, (2 * unit, int(1.5 * unit)), feat_dim, seed=0)
    hint = (" (this front-end cannot go inside a graph with dynamic shapes: export without "
            "--with-frontend and compute features as the JSON beside the file says)"
            if with_frontend else "")
    x, lengths = _example(graph, (int(2.7 * unit), int(1.3 * unit), unit), feat_dim, seed=1)
    try:
        # Export to a temporary name and move it into place only once it reloads and runs.
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shapes we check just below
            if format == "onnx":
                _export_onnx(graph, example, tmp, opset)
            else:
                _export_torchscript(graph, example, tmp)
            with torch.no_grad():
                eager = graph(x, lengths).numpy()
                if format == "onnx":
                    exported = _run_onnx(tmp, x, lengths)
                else:
                    exported = torch.jit.load(str(tmp)).eval()(x, lengths).numpy()
    except Exception as err:  # noqa: BLE001  exporters and runtimes raise many kinds
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{path}: {format} export failed{hint}: {first[:200]}") from None
    inputs = _describe(embedder, with_frontend, frontend_config)
    atomic_write_text(Path(f"{path}.json"), json.dumps(
        {"format": format, "with_frontend": with_frontend, **inputs}, indent=2) + "\n")
    return {"path": str(path), "format": format, "with_frontend": with_frontend,
            "max_abs_diff": float(np.abs(exported - eager).max()), "inputs": inputs}


def _describe(embedder: Embedder, with_frontend: bool,
              frontend_config: dict[str, Any] | None) -> dict[str, Any]:
    # The front-end as it runs at inference: dither is a training-mode option, so the
    # recorded config says 0 (a training config's dither 1.0 rebuilt as is would add noise).
    config = inference_frontend_config(frontend_config or embedder.frontend.config())
    if with_frontend:
        inputs = {"waveform": f"(B, N) float32 in [-1, 1] at {embedder.sample_rate} Hz",
                  "lengths": "(B,) int64 valid samples"}
    else:
        inputs = {"feats": f"(B, T, {embedder.model.feat_dim}) float32 from the front-end below",
                  "lengths": "(B,) int64 valid frames"}
    return {"inputs": inputs, "output": f"embedding (B, {embedder.embed_dim}) float32",
            "sample_rate": embedder.sample_rate, "frontend": config,
            "frontend_usage": "r2n_audio.features.frontend.build_frontend(frontend).eval()",
            "embedding_norm": {"mean_subtracted": embedder.embedding_mean is not None,
                               "l2": embedder.l2_normalize}}
