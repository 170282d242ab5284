"""Fixtures for diarization tests: a tiny random-weight bundle and a small conversation set."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch



@pytest.fixture(scope="session")
def pyannote_sample() -> tuple[Path, Path]:
    """pyannote.audio's real two-speaker recording and its RTTM (from the installed wheel)."""
    # find_spec locates the package without importing it (importing pyannote.audio takes ~10 s).
    spec = importlib.util.find_spec("pyannote.audio")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sample" if spec else None
    if folder is None or not (folder / "sample.wav").is_file():
        pytest.skip("pyannote.audio (with its sample/ folder) is not installed")
    return folder / "sample.wav", folder / "sample.rttm"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``ecapa_tdnn_tiny`` bundle with random weights (seed 0)."""
    from r2n_audio.features.frontend import Frontend
    from r2n_audio.inference.bundle import make_bundle, save_bundle
    from r2n_audio.models import create_model

    torch.manual_seed(0)
    model = create_model("ecapa_tdnn_tiny")
    path = tmp_path_factory.mktemp("bundle") / "tiny.pt"
    save_bundle(make_bundle("ecapa_tdnn_tiny", {}, model.state_dict(), Frontend().config()), path)
    return path


@pytest.fixture(scope="session")
def conversations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ~12 s conversations (2 and 3 speakers), no overlap, made once."""
    from r2n_audio.data.synthetic.conversations import make_conversations

    out = tmp_path_factory.mktemp("conversations")
    make_conversations(out, n_conversations=2, seconds=12.0, min_speakers=2, max_speakers=3,
                       workers=1)
    return out
