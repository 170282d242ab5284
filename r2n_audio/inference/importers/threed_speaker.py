"""3D-Speaker: a ModelScope model folder (bare state dict) as a bundle.

ModelScope ships 3D-Speaker's models as a folder holding the state dict alone
(``pretrained_eres2netv2.ckpt``, ``campplus_cn_common.bin``, ``pretrained_eres2net_large.ckpt``...)
and usually ``configuration.json`` (``model.pretrained_model`` names the file,
``model.model_config`` holds ``fbank_dim`` and ``emb_size``). Without the json the folder must hold
exactly one ``*.ckpt`` / ``*.bin`` / ``*.pt``. The architecture *and* its size are recognised from
the checkpoint's keys and shapes: every candidate of :data:`THREED_SPEAKER_MODELS` is tried and the
one that takes every key with its shape is used (``--arch NAME`` names it instead); one that fits
none fails naming the nearest candidate and its first mismatching keys.

Front-end: ``speakerlab.process.processor.FBank(80, 16000, mean_nor=True)`` as 3D-Speaker's
``infer_sv.py`` uses it: float samples (no int16 scaling), torchaudio Kaldi fbank with its default
povey window, dither 0, per-utterance mean normalisation. Output: the network's embedding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from r2n_audio.errors import ModelError
from r2n_audio.inference.importers.common import (Arch, build_bundle, fit_architecture,
                                                  kaldi_frontend, load_state)

__all__ = ["THREED_SPEAKER_MODELS", "import_3dspeaker"]

#: ``--arch`` name -> (upstream label, our registry name, create_model overrides)
THREED_SPEAKER_MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "eres2net_base": ("3D-Speaker ERes2Net base (m_channels 32)", "eres2net_base", {}),
    "eres2net_large": ("3D-Speaker ERes2Net large (m_channels 64)", "eres2net_large", {}),
    "eres2netv2": ("3D-Speaker ERes2NetV2 (w26 s2 ep2)", "eres2netv2", {}),
    "eres2netv2_w24s4ep4": ("3D-Speaker ERes2NetV2 (w24 s4 ep4)", "eres2netv2_w24_s4_ep4", {}),
    "eres2net_huge": ("3D-Speaker ERes2Net huge (ERes2Net_huge)", "eres2net_huge", {}),
    "campplus": ("3D-Speaker CAM++ (embedding 192)", "campplus", {}),
    "campplus_512": ("3D-Speaker CAM++ (embedding 512)", "campplus", {"embed_dim": 512}),
}
_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")


def _configuration(src: Path) -> dict[str, Any]:
    path = src / "configuration.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelError(f"{path}: cannot parse ({err})") from None
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, dict) else {}


def _checkpoint(src: Path, config: dict[str, Any]) -> Path:
    named = config.get("pretrained_model")
    if isinstance(named, str) and (src / named).is_file():
        return src / named
    found = sorted(p for p in src.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if len(found) != 1:
        raise ModelError(f"{src}: expected one 3D-Speaker checkpoint (*.ckpt, *.bin, *.pt) or a "
                         f"configuration.json naming it, found {[p.name for p in found]}")
    return found[0]


def _candidates(arch: str | None, feat_dim: int, src: Path) -> list[Arch]:
    if arch is not None and arch not in THREED_SPEAKER_MODELS:
        raise ModelError(f"{src}: unknown 3D-Speaker architecture {arch!r}; choose --arch from "
                         f"{', '.join(THREED_SPEAKER_MODELS)}")
    names = [arch] if arch else list(THREED_SPEAKER_MODELS)
    out = []
    for name in names:
        label, model, args = THREED_SPEAKER_MODELS[name]
        out.append(Arch(label, model, {"feat_dim": feat_dim, **args}, source="3dspeaker"))
    return out


def import_3dspeaker(src: str | os.PathLike, arch: str | None = None) -> dict[str, Any]:
    """Bundle from a 3D-Speaker ModelScope folder (see the module docstring).

    Parameters
    ----------
    src : path
        The folder.
    arch : str, optional
        A key of :data:`THREED_SPEAKER_MODELS`; default: recognised from the checkpoint.
    """
    src = Path(src)
    config = _configuration(src)
    model_config = config.get("model_config") if isinstance(config.get("model_config"), dict) else {}
    feat_dim = int(model_config.get("fbank_dim", 80))
    ckpt = _checkpoint(src, config)
    spec, model = fit_architecture(_candidates(arch, feat_dim, src), load_state(ckpt), str(ckpt))
    frontend = kaldi_frontend(num_mel_bins=feat_dim, waveform_scale=1.0, window_type="povey")
    return build_bundle(spec, model, frontend, "3dspeaker", src.resolve())
