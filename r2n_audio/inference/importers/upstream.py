"""Upstream model code for parity checks and benchmarks, loaded without the toolkits' CLIs,
and the weight randomiser both use.

WeSpeaker's package ``__init__`` imports its command line and heavy dependencies (installed here
``--no-deps`` as ``wespeaker-unofficial``); :func:`wespeaker_models_module` loads one
``wespeaker/models/<name>.py`` file (and the ``pooling_layers`` it imports) by path under stub
``wespeaker`` / ``wespeaker.models`` packages, so ``wespeaker/__init__.py`` never runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import torch

from r2n_audio.errors import ModelError

__all__ = ["randomize_all", "wespeaker_models_dir", "wespeaker_models_module"]


def wespeaker_models_dir() -> Path:
    """The installed ``wespeaker/models`` folder (found without importing the package)."""
    loaded = sys.modules.get("wespeaker.models")
    if loaded is not None and getattr(loaded, "__path__", None):
        return Path(list(loaded.__path__)[0])
    spec = importlib.util.find_spec("wespeaker")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("wespeaker is not installed (pip install --no-deps wespeaker-unofficial)")
    return Path(list(spec.submodule_search_locations)[0], "models")


def wespeaker_models_module(name: str) -> types.ModuleType:
    """``wespeaker.models.<name>`` (e.g. ``"resnet"``) loaded by file, no package ``__init__``."""
    full = f"wespeaker.models.{name}"
    if getattr(sys.modules.get(full), "__file__", None):
        return sys.modules[full]
    models_dir = wespeaker_models_dir()
    for pkg, path in (("wespeaker", models_dir.parent), ("wespeaker.models", models_dir)):
        if not hasattr(sys.modules.get(pkg), "__path__"):
            stub = types.ModuleType(pkg)
            stub.__path__ = [str(path)]  # submodules resolve by file; __init__ never runs
            # A spec like the real package's, so that a later importlib.util.find_spec(pkg)
            # (made by any other code) still finds the folder instead of raising.
            stub.__spec__ = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
            stub.__spec__.submodule_search_locations = [str(path)]
            sys.modules[pkg] = stub
    for mod in ("pooling_layers", name):
        key = f"wespeaker.models.{mod}"
        if not getattr(sys.modules.get(key), "__file__", None):
            spec = importlib.util.spec_from_file_location(key, models_dir / f"{mod}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            spec.loader.exec_module(module)
    return sys.modules[full]


def randomize_all(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights, BatchNorm running statistics *and* affine terms (nothing is an identity
    by accident), scaled per tensor so that deep networks keep activations of order one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean") or tensor.dim() <= 1:
                base = 1.0 if name.endswith("weight") else 0.0
                tensor.copy_(base + 0.2 * torch.randn(tensor.shape, generator=gen))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in ** 0.5)
    return model.eval()
