"""Frontend (Fbank + CMN) against WeSpeaker's feature recipe on torchaudio; config round trips."""

from __future__ import annotations

import json
import sys
import types
import warnings

import pytest
import torch

from r2n_audio.errors import R2NError
from r2n_audio.features import Frontend, build_frontend

kaldi = pytest.importorskip("torchaudio.compliance.kaldi")


def _wespeaker_fbank(wave: torch.Tensor) -> torch.Tensor:
    """WeSpeaker's ``compute_fbank`` (processor.py) on one utterance, dither off."""
    feats = kaldi.fbank(wave.unsqueeze(0) * (1 << 15), num_mel_bins=80, frame_length=25,
                        frame_shift=10, dither=0.0, sample_frequency=16000,
                        window_type="hamming", use_energy=False, energy_floor=0.0)
    return feats - feats.mean(0, keepdim=True)


def test_default_is_wespeaker_features_with_cmn():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([16000, 7321])
    waves = 0.1 * torch.randn(2, 16000, generator=g, dtype=torch.float64)
    waves[1, 7321:] = 0.9
    feats, frames = Frontend()(waves, lengths)
    assert feats.shape == (2, 98, 80) and frames.tolist() == [98, 44]
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(feats[i, :int(frames[i])], _wespeaker_fbank(waves[i, :n]),
                                   rtol=1e-4, atol=1e-8)
    assert not feats[1, 44:].any()


def test_config_is_json_and_round_trips():
    frontend = Frontend(num_mel_bins=40, dither=1.0, cmn_var=True, snip_edges=False)
    config = json.loads(json.dumps(frontend.config()))
    assert config["type"] == "kaldi" and config["num_mel_bins"] == 40 and config["cmn_var"]
    rebuilt = build_frontend(config)
    assert isinstance(rebuilt, Frontend) and rebuilt.config() == frontend.config()
    assert rebuilt.num_features == 40 and rebuilt.sample_rate == 16000
    x = torch.randn(1, 4000)
    torch.testing.assert_close(rebuilt.eval()(x)[0], frontend.eval()(x)[0])


def test_no_cmn_leaves_fbank():
    x = 0.1 * torch.randn(1, 8000, dtype=torch.float64)
    feats, _ = Frontend(cmn=False, waveform_scale=1.0, window_type="povey", num_mel_bins=23,
                        energy_floor=1.0)(x)
    torch.testing.assert_close(feats[0], kaldi.fbank(x), rtol=1e-4, atol=1e-8)


def test_build_frontend_errors_and_lazy_speechbrain(monkeypatch):
    with pytest.raises(R2NError, match="type"):
        build_frontend({"num_mel_bins": 80})
    with pytest.raises(R2NError, match="unknown front-end type"):
        build_frontend({"type": "mfcc"})
    with pytest.raises(R2NError, match="unknown kaldi front-end options"):
        build_frontend({"type": "kaldi", "n_mels": 80})

    class FakeSpeechBrain(torch.nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.kwargs = kwargs

    fake = types.ModuleType("r2n_audio.features.speechbrain_fbank")
    fake.SpeechBrainFrontend = FakeSpeechBrain
    monkeypatch.setitem(sys.modules, "r2n_audio.features.speechbrain_fbank", fake)
    built = build_frontend({"type": "speechbrain", "n_mels": 80})
    assert isinstance(built, FakeSpeechBrain) and built.kwargs == {"n_mels": 80}


def test_onnx_export_runs_new_shapes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    frontend = Frontend().eval()
    example = (0.1 * torch.randn(2, 16000), torch.tensor([16000, 12000]))
    path = tmp_path / "frontend.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notes
        torch.onnx.export(frontend, example, str(path), input_names=["wave", "lengths"],
                          output_names=["feats", "frames"], opset_version=17, dynamo=False,
                          dynamic_axes={"wave": {0: "b", 1: "n"}, "lengths": {0: "b"},
                                        "feats": {0: "b", 1: "t"}, "frames": {0: "b"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    waves, lengths = 0.1 * torch.randn(3, 24000, generator=g), torch.tensor([24000, 9000, 401])
    feats, frames = session.run(None, {"wave": waves.numpy(), "lengths": lengths.numpy()})
    assert frames.tolist() == [148, 54, 1]
    for i, n in enumerate(lengths.tolist()):
        ref = _wespeaker_fbank(waves[i, :n])
        torch.testing.assert_close(torch.from_numpy(feats[i, :frames[i]]), ref, rtol=0,
                                   atol=2e-3)
        assert not feats[i, frames[i]:].any()
