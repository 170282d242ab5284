"""Helpers every importer shares: state dicts, key maps, fitting a checkpoint to an architecture,
the upstream front-ends, and assembling the bundle.

An :class:`Arch` says how one upstream architecture becomes one of our registered models: the
registry name, its ``create_model`` arguments and a key map (upstream name -> ours, ``None`` to
drop a key such as a training head). :func:`fit_architecture` tries candidates in order and, when
none fits, names the nearest one and its first mismatching keys.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from r2n_audio.checkpoints import read_checkpoint
from r2n_audio.errors import ModelError
from r2n_audio.inference.bundle import make_bundle
from r2n_audio.inference.embedder import load_weights_strict
from r2n_audio.models import create_model, is_model

__all__ = ["Arch", "KeyMap", "as_state_dict", "build_bundle", "fit_architecture",
           "kaldi_frontend", "load_state", "per_key", "rename"]

#: upstream key -> our key, or ``None`` to drop it
KeyMap = Callable[[str], "str | None"]


def rename(*rules: tuple[str, str], drop: Sequence[str] = ()) -> KeyMap:
    """A key map from regex substitutions applied in order, dropping keys matching ``drop``
    (regexes) and a DDP ``module.`` prefix."""
    compiled = [(re.compile(p), r) for p, r in rules]
    dropped = [re.compile(p) for p in drop]

    def key_map(key: str) -> str | None:
        key = key.removeprefix("module.")
        if any(d.search(key) for d in dropped):
            return None
        for pattern, repl in compiled:
            key = pattern.sub(repl, key)
        return key

    return key_map


def per_key(state_map: Callable[[dict], dict]) -> KeyMap:
    """A :data:`KeyMap` from a zoo module's ``state_dict -> state_dict`` converter (applied to
    one key at a time; a key it leaves out is dropped)."""
    def key_map(key: str) -> str | None:
        return next(iter(state_map({key: None})), None)

    return key_map


@dataclass(frozen=True)
class Arch:
    r"""One upstream architecture as one of our registered models.

    Attributes
    ----------
    label : str
        Upstream name, for messages (``"WeSpeaker ResNet221"``).
    model : str
        Our registry name.
    args : dict
        ``create_model`` overrides (JSON types: they go into the bundle).
    key_map : KeyMap, optional
        Upstream state-dict key -> ours (``None`` drops it). Default: the model module's
        documented ``upstream_key_map(keys, source) -> {upstream: ours}`` if it has one, else
        the same names (models built with upstream's names).
    source : str
        The toolkit, passed to a module's ``upstream_key_map`` (``"wespeaker"``, ``"3dspeaker"``).
    drop : tuple of str
        Regexes of upstream keys to drop first (a training head such as ``^projection\.``).
    """

    label: str
    model: str
    args: dict[str, Any] = field(default_factory=dict)
    key_map: KeyMap | None = None
    drop: tuple[str, ...] = ()
    source: str = ""

    def available(self) -> bool:
        """Whether our zoo has the model (architectures land in the zoo one by one)."""
        return is_model(self.model)


def as_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The mapping of names to tensors in ``obj`` (a bare state dict or ``{"state_dict": ...}``).

    Raises
    ------
    ModelError
        ``obj`` holds no such mapping.
    """
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: not a state_dict (expected a mapping of names to tensors)")
    return dict(obj)


def load_state(path: Path, allow: str | None = None) -> dict[str, torch.Tensor]:
    """:func:`~r2n_audio.checkpoints.read_checkpoint` then :func:`as_state_dict`."""
    return as_state_dict(read_checkpoint(path, allow=allow), path)


def _mapped(arch: Arch, model: torch.nn.Module,
            state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    dropped = rename(drop=arch.drop)
    kept = {k: v for k, v in state.items() if dropped(k) is not None}
    kept = {dropped(k): v for k, v in kept.items()}
    if arch.key_map is not None:
        pairs = ((arch.key_map(k), v) for k, v in kept.items())
        return {k: v for k, v in pairs if k is not None}
    module_map = getattr(sys.modules.get(type(model).__module__), "upstream_key_map", None)
    if module_map is None:
        return kept
    names = module_map(list(kept), arch.source)
    return {names[k]: v for k, v in kept.items()}


def _mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
    """How badly ``state`` misses ``model``: keys missing, unexpected or of another shape."""
    own = model.state_dict()
    bad = sum(k not in state or state[k].shape != v.shape for k, v in own.items())
    return bad + sum(k not in own for k in state)


def _skeleton(arch: Arch) -> torch.nn.Module:
    """The model on the meta device (shapes only: no memory, no initialisation), or a real one
    where a constructor computes on tensors."""
    try:
        with torch.device("meta"):
            return create_model(arch.model, **arch.args)
    except (RuntimeError, NotImplementedError):
        return create_model(arch.model, **arch.args)


def fit_architecture(candidates: Sequence[Arch], state: dict[str, torch.Tensor],
                     source: str) -> tuple[Arch, torch.nn.Module]:
    """The first candidate whose model takes ``state`` (after its key map) strictly.

    Returns
    -------
    (arch, model)
        The candidate and its model with the weights loaded, in eval mode.

    Raises
    ------
    ModelError
        No candidate fits: names the nearest one (fewest mismatching keys) and its first
        missing / unexpected / mis-shaped keys.
    """
    tried = [a for a in candidates if a.available()]
    if not tried:
        names = ", ".join(a.label for a in candidates)
        raise ModelError(f"{source}: none of the architectures it could be ({names}) is in "
                         f"r2n-audio's model zoo yet")
    scored = []
    for arch in tried:
        skeleton = _skeleton(arch)
        mapped = _mapped(arch, skeleton, state)
        score = _mismatch(skeleton, mapped)
        if score == 0:
            model = create_model(arch.model, **arch.args)
            load_weights_strict(model, mapped, source)
            return arch, model.eval()
        scored.append((score, arch, skeleton, mapped))
    _, arch, model, mapped = min(scored, key=lambda s: s[0])
    try:
        load_weights_strict(model, mapped, f"{source} (nearest architecture: {arch.label})")
    except ModelError as err:
        raise ModelError(str(err).replace(f"does not fit {type(model).__name__}",
                                          f"fits no known architecture; nearest {arch.label}",
                                          1)) from None
    raise AssertionError("unreachable: a zero-mismatch state loads")  # pragma: no cover


def kaldi_frontend(num_mel_bins: int = 80, waveform_scale: float = 32768.0,
                   window_type: str = "hamming", frame_length: float = 25.0,
                   frame_shift: float = 10.0, sample_rate: int = 16000) -> dict[str, Any]:
    """Config of our Kaldi front-end as a toolkit extracts at test time: ``waveform_scale``
    (WeSpeaker and pyannote: int16 range; 3D-Speaker: 1.0), its window, dither 0, then
    per-utterance mean normalisation (no variance)."""
    from r2n_audio.features.frontend import Frontend

    return Frontend(cmn=True, num_mel_bins=int(num_mel_bins), waveform_scale=float(waveform_scale),
                    window_type=window_type, frame_length=float(frame_length),
                    frame_shift=float(frame_shift), dither=0.0,
                    sample_frequency=float(sample_rate)).config()


def build_bundle(arch: Arch, model: torch.nn.Module, frontend: dict[str, Any], source: str,
                 src: Path, embedding_mean: torch.Tensor | None = None,
                 sample_rate: int = 16000, **meta: Any) -> dict[str, Any]:
    """The bundle of an imported model (``meta`` records the source toolkit and architecture)."""
    return make_bundle(arch.model, arch.args, model.state_dict(), frontend,
                       sample_rate=sample_rate, embedding_mean=embedding_mean,
                       meta={"source": source, "source_path": str(src), "architecture":
                             arch.label, **meta})
