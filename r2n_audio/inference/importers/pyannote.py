"""pyannote.audio: ``pyannote/wespeaker-voxceleb-resnet34-LM`` (and its ResNet152/221/293
siblings) as downloaded, as a bundle.

``pytorch_model.bin`` is a Lightning checkpoint written by pyannote's ``Model.on_save_checkpoint``:
``{"state_dict": {"resnet.conv1.weight", ...}, "pyannote.audio": {"versions", "architecture":
{"module", "class": "WeSpeakerResNet34"}, "specifications": Specifications(...)},
"pytorch-lightning_version": ..., optionally "hyper_parameters"}``. The ``Specifications``
dataclass and its ``Problem`` / ``Resolution`` enums are pyannote objects: they are admitted by
name through the ``"pyannote"`` allow-list of :func:`r2n_audio.checkpoints.read_checkpoint` as
inert data; nothing in the file runs and pyannote need not be installed.

The network under ``resnet.`` is WeSpeaker's ResNet (see :mod:`.wespeaker`). pyannote's
extraction (``BaseWeSpeakerResNet.compute_fbank``): samples times ``2**15``, torchaudio Kaldi fbank
(80 bins, 25/10 ms, hamming, dither 0, snip edges), minus the mean over the whole input
(``fbank_centering_span`` None); the output is ``embed_a``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from r2n_audio.checkpoints import read_checkpoint
from r2n_audio.errors import ModelError
from r2n_audio.inference.importers.common import (Arch, as_state_dict, build_bundle,
                                                  fit_architecture, kaldi_frontend, rename)
from r2n_audio.inference.importers.wespeaker import RESNET_BASIC, RESNET_BOTTLENECK

__all__ = ["PYANNOTE_MODELS", "import_pyannote"]

#: pyannote class -> (our registry name, key map after the ``resnet.`` prefix is removed)
PYANNOTE_MODELS = {
    "WeSpeakerResNet34": ("resnet34", RESNET_BASIC),
    "WeSpeakerResNet152": ("resnet152", RESNET_BOTTLENECK),
    "WeSpeakerResNet221": ("resnet221", RESNET_BOTTLENECK),
    "WeSpeakerResNet293": ("resnet293", RESNET_BOTTLENECK),
}
_UNPREFIX = rename((r"^resnet\.", ""))
# hyper-parameters whose pyannote defaults we reproduce; anything else must keep its default
_DEFAULTS = {"sample_rate": 16000, "num_channels": 1, "num_mel_bins": 80, "frame_length": 25,
             "frame_shift": 10, "dither": 0.0, "window_type": "hamming", "use_energy": False,
             "round_to_power_of_two": True, "snip_edges": True, "fbank_centering_span": None}


def _checkpoint(src: Path) -> Path:
    path = src / "pytorch_model.bin"
    if not path.is_file():
        raise ModelError(f"{src}: no pytorch_model.bin: expected a pyannote.audio model folder "
                         f"(e.g. pyannote/wespeaker-voxceleb-resnet34-LM)")
    return path


def _architecture(ckpt: Any, path: Path) -> str:
    info = ckpt.get("pyannote.audio") if isinstance(ckpt, dict) else None
    name = ((info or {}).get("architecture") or {}).get("class") if isinstance(info, dict) else None
    if name not in PYANNOTE_MODELS:
        raise ModelError(f"{path}: pyannote.audio architecture {name!r} is not supported; "
                         f"supported: {', '.join(PYANNOTE_MODELS)}")
    return str(name)


def _hyper_parameters(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    hp = {**_DEFAULTS, **dict(ckpt.get("hyper_parameters") or {})}
    fixed = ("sample_rate", "num_channels", "dither", "use_energy", "round_to_power_of_two",
             "snip_edges", "fbank_centering_span")
    changed = {k: hp[k] for k in fixed if hp[k] != _DEFAULTS[k]}
    if changed:
        raise ModelError(f"{path}: pyannote hyper-parameters {changed} are not supported "
                         f"(supported: the defaults {({k: _DEFAULTS[k] for k in changed})})")
    return hp


def import_pyannote(src: str | os.PathLike, arch: str | None = None) -> dict[str, Any]:
    """Bundle from a pyannote.audio WeSpeaker-ResNet folder (see the module docstring).

    ``arch`` (a pyannote class name such as ``WeSpeakerResNet34``) overrides the checkpoint's.
    """
    src = Path(src)
    path = _checkpoint(src)
    ckpt = read_checkpoint(path, allow="pyannote")
    name = arch or _architecture(ckpt, path)
    if name not in PYANNOTE_MODELS:
        raise ModelError(f"{path}: --arch {name!r} is not a pyannote.audio WeSpeaker ResNet; "
                         f"choose from {', '.join(PYANNOTE_MODELS)}")
    hp = _hyper_parameters(ckpt, path)
    state = {k: v for k, v in as_state_dict(ckpt, path).items() if k.startswith("resnet.")}
    state = {_UNPREFIX(k): v for k, v in state.items()}
    model_name, key_map = PYANNOTE_MODELS[name]
    spec, model = fit_architecture(
        [Arch(f"pyannote.audio {name}", model_name,
              {"feat_dim": int(hp["num_mel_bins"]), "embed_dim": 256}, key_map)], state, str(path))
    frontend = kaldi_frontend(num_mel_bins=hp["num_mel_bins"], window_type=hp["window_type"],
                              frame_length=hp["frame_length"], frame_shift=hp["frame_shift"])
    return build_bundle(spec, model, frontend, "pyannote", src.resolve())
