"""``r2n-audio import pyannote`` against pyannote.audio's own ``WeSpeakerResNet34``.

The checkpoint is written exactly as pyannote's ``models/embedding/wespeaker/convert.py`` wrote
``pyannote/wespeaker-voxceleb-resnet34-LM``'s ``pytorch_model.bin`` (a Lightning checkpoint that
pickles pyannote's ``Specifications``, ``Problem`` and ``Resolution``); the reference is the pyannote
model's own forward on the waveform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from r2n_audio.cli import main
from r2n_audio.errors import ModelError
from r2n_audio.inference.importers import import_model

from .test_import_wespeaker import import_and_embed
from .upstream_models import cosine_gap, randomize_all, speech_crop


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return speech_crop(tmp_path_factory.mktemp("speech"), start=10.6, seconds=3.5)


def pyannote_folder(folder: Path, cls_name: str = "WeSpeakerResNet34") -> torch.nn.Module:
    """``pytorch_model.bin`` as pyannote's convert.py makes it, from a random upstream model."""
    wespeaker = pytest.importorskip("pyannote.audio.models.embedding.wespeaker")
    task = pytest.importorskip("pyannote.audio.core.task")
    lightning = pytest.importorskip("lightning")
    model = getattr(wespeaker, cls_name)()
    randomize_all(model.resnet)
    model.specifications = task.Specifications(problem=task.Problem.REPRESENTATION,
                                               resolution=task.Resolution.CHUNK, duration=5.0)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, folder / "pytorch_model.bin")
    return model.eval()


def _reference(model: torch.nn.Module, wav: Path) -> np.ndarray:
    data, _ = sf.read(wav, dtype="float32")
    with torch.no_grad():
        return model(torch.from_numpy(data)[None, None])[0].double().numpy()


@pytest.mark.parametrize("cls_name", ["WeSpeakerResNet34",
                                      pytest.param("WeSpeakerResNet221", marks=pytest.mark.slow)])
def test_pyannote_parity_through_the_cli(cls_name: str, speech: Path, tmp_path: Path) -> None:
    upstream = pyannote_folder(tmp_path / "pyannote", cls_name)
    with pytest.raises(Exception, match="(?i)weights only load failed"):
        torch.load(tmp_path / "pyannote" / "pytorch_model.bin", weights_only=True)
    ours, bundle = import_and_embed("pyannote", tmp_path / "pyannote", speech, tmp_path)
    assert bundle["meta"]["architecture"] == f"pyannote.audio {cls_name}"
    assert cosine_gap(ours, _reference(upstream, speech)) <= 1e-4


def test_unknown_pyannote_architecture(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "seg"
    folder.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(1)},
                "pyannote.audio": {"architecture": {"module": "x", "class": "PyanNet"}}},
               folder / "pytorch_model.bin")
    assert main(["import", "pyannote", str(folder), "-o", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'PyanNet' is not supported" in err
    assert not (tmp_path / "b.pt").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pyannote_checkpoint_with_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"state_dict": {}, "pyannote.audio": {"specifications": _Payload()}},
               folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"refused to load.*\(global print\); nothing was run"):
        import_model("pyannote", folder)
