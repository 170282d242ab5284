"""Hub ids as import sources, offline: the test lays out a Hugging Face cache as
``huggingface_hub`` does (``models--owner--name/refs/main``, ``snapshots/<sha>/``, ``blobs/``) and
nothing is ever downloaded (``HF_HUB_OFFLINE=1``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from r2n_audio.cli import main
from r2n_audio.inference.bundle import load_bundle

from .test_import_pyannote import pyannote_folder
from .test_import_wespeaker import wespeaker_folder

REPO = "pyannote/wespeaker-voxceleb-resnet34-LM"
SHA = "837717ddb9ff5507820346191109dc79c958d614"


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch) -> Path:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hub_constants
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the environment once, at import: point its constants here too.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


def _cache_repo(cache: Path, repo: str, files: Path) -> None:
    """Put ``files/*`` into the cache as huggingface_hub lays it out (blobs + snapshot links)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(SHA)
    snapshot = root / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    for i, f in enumerate(sorted(files.iterdir())):
        blob = root / "blobs" / f"{i:040x}"
        blob.write_bytes(f.read_bytes())
        os.symlink(os.path.relpath(blob, snapshot), snapshot / f.name)


def test_hub_id_from_the_offline_cache(offline_cache: Path, tmp_path: Path, capsys) -> None:
    upstream = pyannote_folder(tmp_path / "download")
    _cache_repo(offline_cache, REPO, tmp_path / "download")
    out = tmp_path / "x.pt"
    assert main(["import", "pyannote", REPO, "-o", str(out)]) == 0, capsys.readouterr().err
    bundle = load_bundle(out)
    assert bundle["model_name"] == "resnet34"
    assert torch.equal(bundle["state_dict"]["layer1.0.conv1.weight"],
                       upstream.resnet.layer1[0].conv1.weight)


def test_wespeaker_hub_id(offline_cache: Path, tmp_path: Path) -> None:
    wespeaker_folder(tmp_path / "w", "ResNet34", "resnet",
                     {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP"})
    _cache_repo(offline_cache, "Wespeaker/wespeaker-voxceleb-resnet34", tmp_path / "w")
    assert main(["import", "wespeaker", "Wespeaker/wespeaker-voxceleb-resnet34",
                 "-o", str(tmp_path / "w.pt")]) == 0


def test_hub_id_without_network_is_one_line(offline_cache: Path, tmp_path: Path,
                                            capsys) -> None:
    out = tmp_path / "x.pt"
    assert main(["import", "pyannote", "nobody/not-cached", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nobody/not-cached" in err and "cache" in err
    assert not out.exists()
