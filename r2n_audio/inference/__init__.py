"""Inference: export bundles, the Embedder, ONNX/TorchScript export, checkpoint importers.

``from r2n_audio.inference import Embedder`` works; the submodules are imported on first use so
that ``r2n_audio.inference.bundle`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Embedder", "export_model", "import_model"]

_LAZY = {"Embedder": "r2n_audio.inference.embedder",
         "export_model": "r2n_audio.inference.export",
         "import_model": "r2n_audio.inference.importers"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
