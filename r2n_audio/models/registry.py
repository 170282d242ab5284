"""Model registry in timm's shape: ``@register_model`` on small factories, ``create_model``.

Every factory is a function named after the model it builds, taking keyword overrides only::

    @register_model
    def ecapa_tdnn_c512(**overrides) -> EcapaTdnn:
        return build(EcapaTdnn, dict(channels=(512, 512, 512, 512, 1536)), overrides)

``create_model(name, **overrides)`` looks the name up; an unknown name raises
:class:`~r2n_audio.errors.ModelError` listing close matches and every registered name, and an
unknown override raises one listing the arguments the model accepts.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from typing import Any, Callable, TypeVar

import torch.nn as nn

from r2n_audio.errors import ModelError

__all__ = ["register_model", "create_model", "list_models", "is_model", "build"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_F = TypeVar("_F", bound=Callable[..., nn.Module])


def register_model(fn: _F) -> _F:
    """Register ``fn`` under its ``__name__`` (decorator). Names must be unique."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, filtered by an fnmatch ``pattern`` (e.g. ``"ecapa*"``)."""
    names = sorted(_MODELS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def is_model(name: str) -> bool:
    """Whether ``name`` is registered."""
    return name in _MODELS


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name``, with constructor arguments overridden.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    **overrides
        Constructor arguments, e.g. ``feat_dim=64, embed_dim=192`` for speaker backbones or
        ``in_channels=3, num_classes=1000`` for the 2-D ImageNet classifiers.

    Raises
    ------
    ModelError
        Unknown name (with close matches) or an argument the model does not take.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(list_models())}"
        ) from None
    return factory(**overrides)


def build(cls: type[nn.Module], defaults: dict[str, Any], overrides: dict[str, Any]) -> nn.Module:
    """Instantiate ``cls(**{**defaults, **overrides})``, naming a bad override clearly."""
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ModelError(
            f"{cls.__name__} does not take {', '.join(unknown)}; it accepts: {', '.join(accepted)}"
        )
    return cls(**{**defaults, **overrides})
