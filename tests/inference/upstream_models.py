"""Upstream reference code for the importer parity tests, loaded without the toolkits' CLIs.

- WeSpeaker (``wespeaker-unofficial``): ``wespeaker/models/*.py`` loaded by file without the
  package ``__init__`` (:mod:`r2n_audio.inference.importers.upstream`).
- 3D-Speaker (``speakerlab``): its model modules import cleanly.
- Any other reference file (WeSpeaker's schedulers and spectral clusterer, 3D-Speaker's
  clusterer): :func:`upstream_file`, loaded by path with stand-ins for what it imports but the
  tests do not use.
- Real speech: pyannote.audio's sample recording, cropped.
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from r2n_audio.inference.importers.upstream import randomize_all

__all__ = ["upstream_file", "wespeaker_module", "speakerlab_module", "randomize_all", "speech_crop",
           "wespeaker_extract", "speakerlab_extract", "cosine_gap"]


def _site_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"reference package {package} is not installed")
    return Path(list(spec.submodule_search_locations)[0], *parts)


def upstream_file(package: str, path: str,
                  stubs: dict[str, types.ModuleType] | None = None) -> types.ModuleType:
    """The module file ``path`` of the installed ``package``, loaded without the package's
    ``__init__`` (WeSpeaker's pulls its whole CLI), with ``stubs`` standing in for modules it
    imports (restored afterwards); skipped if the package is not installed."""
    import sys

    file = _site_file(package, path)
    stubs = stubs or {}
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(f"_ref_{package}_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module


def wespeaker_module(name: str) -> types.ModuleType:
    """``wespeaker.models.<name>`` loaded by file, no package init; skipped if not installed."""
    from r2n_audio.errors import ModelError
    from r2n_audio.inference.importers.upstream import wespeaker_models_module

    try:
        return wespeaker_models_module(name)
    except ModelError as err:
        pytest.skip(str(err))


def speakerlab_module(dotted: str) -> types.ModuleType:
    """A speakerlab module (``speakerlab.models.eres2net.ERes2Net``), skipped if not installed."""
    return pytest.importorskip(dotted)


def speech_crop(tmp_path: Path, start: float = 8.3, seconds: float = 3.0,
                name: str = "speech.wav") -> Path:
    """A crop of pyannote.audio's real two-speaker recording (16 kHz int16), bit-exact."""
    sample = _site_file("pyannote.audio", "sample", "sample.wav")
    data, sr = sf.read(sample, dtype="int16")
    piece = data[int(start * sr): int((start + seconds) * sr)]
    path = tmp_path / name
    sf.write(path, piece, sr, subtype="PCM_16")
    return path


def _wave(path: Path) -> torch.Tensor:
    data, _ = sf.read(path, dtype="float32")
    return torch.from_numpy(np.ascontiguousarray(data))[None]


def wespeaker_extract(model: torch.nn.Module, wav: Path, num_mel_bins: int = 80) -> np.ndarray:
    """WeSpeaker's extraction: torchaudio Kaldi fbank on samples * 2**15, hamming, dither 0,
    CMN; the model's last output (``embed_a`` without a second embedding layer)."""
    import torchaudio.compliance.kaldi as kaldi

    feats = kaldi.fbank(_wave(wav) * (1 << 15), num_mel_bins=num_mel_bins, frame_length=25,
                        frame_shift=10, dither=0.0, sample_frequency=16000,
                        window_type="hamming")
    feats = feats - feats.mean(0, keepdim=True)
    with torch.no_grad():
        out = model(feats[None])
    return (out[-1] if isinstance(out, tuple) else out)[0].double().numpy()


def speakerlab_extract(model: torch.nn.Module, wav: Path, num_mel_bins: int = 80) -> np.ndarray:
    """3D-Speaker's extraction: ``speakerlab.process.processor.FBank(n, 16000, mean_nor=True)``."""
    processor = pytest.importorskip("speakerlab.process.processor")
    feats = processor.FBank(num_mel_bins, sample_rate=16000, mean_nor=True)(_wave(wav))
    with torch.no_grad():
        return model(feats[None])[0].double().numpy()


def cosine_gap(a: np.ndarray, b: np.ndarray) -> float:
    """``1 - cos(a, b)`` in float64."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
