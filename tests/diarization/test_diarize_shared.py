"""``r2n-audio diarize --frames shared``: windows embedded from shared frame-level features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from r2n_audio.cli import main
from r2n_audio.diarization.pipeline import Diarizer
from r2n_audio.errors import R2NError
from r2n_audio.inference.embedder import Embedder

pytest.importorskip("pyannote.metrics")


def test_cli_frames_shared_embeds_through_embed_windows(tmp_path, conversations, tiny_bundle,
                                                        capsys, monkeypatch):
    calls: list[int] = []
    real = Embedder.embed_windows

    def spy(self, wave, windows, **kwargs):
        calls.append(len(windows))
        return real(self, wave, windows, **kwargs)

    monkeypatch.setattr(Embedder, "embed_windows", spy)
    monkeypatch.setattr(Embedder, "embed_batch", lambda *a, **k: pytest.fail("per-window path"))
    assert main(["diarize", str(conversations / "wav.scp"), "--model", str(tiny_bundle), "-o",
                 str(tmp_path), "--reference", str(conversations / "rttm"), "--vad", "oracle",
                 "--frames", "shared", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == 2 and len(calls) == 2 and min(calls) > 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv0001.rttm", "conv0002.rttm"]


def test_shared_windows_are_the_embedders(conversations, tiny_bundle):
    """The diarizer hands its windows to ``embed_windows`` unchanged (what the test above
    spies on is what clustering gets)."""
    diarizer = Diarizer.from_pretrained(tiny_bundle, device="cpu", frames="shared")
    wave = np.random.default_rng(0).standard_normal(16000 * 6).astype(np.float32) * 0.1
    windows = np.array([[0.0, 1.5], [0.75, 2.25], [4.0, 5.5]])
    assert np.array_equal(diarizer._embed(wave, windows),
                          diarizer.embedder.embed_windows(wave, windows))


def test_unknown_frames_mode(tiny_bundle):
    with pytest.raises(R2NError, match="frames must be one of"):
        Diarizer.from_pretrained(tiny_bundle, device="cpu", frames="both")
