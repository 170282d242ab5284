"""r2n_audio.audio: decoding, mixdown, resampling, and the errors for bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as taf

from r2n_audio import audio
from r2n_audio.audio import AudioError, audio_duration, load_audio


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch):
    monkeypatch.setattr(audio, "_reported", set())


@pytest.mark.parametrize("ext,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"),
                                         (".ogg", "VORBIS"), (".wav", "FLOAT")])
def test_formats_match_soundfile(make_wav, ext, subtype):
    path = make_wav(f"a{ext}", seconds=0.5, subtype=subtype)
    ref, sr = sf.read(path, dtype="float32")
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.shape == (len(ref),) and sr == 16000
    np.testing.assert_array_equal(wave.numpy(), np.clip(ref, -1, 1))


def test_mixdown_is_channel_mean_and_reported_once(make_wav, caplog):
    paths = [make_wav(f"s{i}.wav", seconds=0.3, channels=2) for i in range(3)]
    with caplog.at_level(logging.INFO, logger="r2n_audio.audio"):
        waves = [load_audio(p) for p in paths]
    ref, _ = sf.read(paths[0], dtype="float32")
    np.testing.assert_allclose(waves[0].numpy(), ref.mean(axis=1), atol=1e-7)
    assert sum("mixing" in r.message for r in caplog.records) == 1


def test_resample_matches_torchaudio_and_reported_once(make_wav, caplog):
    paths = [make_wav(f"r{i}.wav", seconds=0.5, sr=8000) for i in range(3)]
    with caplog.at_level(logging.INFO, logger="r2n_audio.audio"):
        waves = [load_audio(p, sample_rate=16000) for p in paths]
    ref, _ = sf.read(paths[0], dtype="float32")
    expected = taf.resample(torch.from_numpy(ref), 8000, 16000).clamp(-1, 1)
    assert waves[0].shape == (8000,)
    torch.testing.assert_close(waves[0], expected)
    assert sum("resampling" in r.message for r in caplog.records) == 1


def test_duration_from_header(make_wav):
    assert audio_duration(make_wav("d.flac", seconds=1.25, sr=8000)) == pytest.approx(1.25)


def test_float_beyond_full_scale_is_clipped(make_wav):
    path = make_wav("loud.wav", subtype="FLOAT", data=np.full(4000, 1.5))
    assert float(load_audio(path).max()) == 1.0


@pytest.mark.parametrize("case,problem", [
    ("missing", "not found"), ("corrupt", "cannot decode"), ("empty", "no samples"),
    ("nan", "NaN or Inf"), ("short", "too short"), ("dir", "directory")])
def test_bad_files_raise_audio_error_naming_file(tmp_path, make_wav, case, problem):
    path = tmp_path / f"{case}.wav"
    if case == "corrupt":
        path.write_bytes(b"RIFF\x00\x00not really a wav file at all")
    elif case == "empty":
        sf.write(path, np.zeros((0,), np.float32), 16000)
    elif case == "nan":
        make_wav(path.name, subtype="FLOAT", data=np.r_[np.zeros(3000), np.nan, np.inf])
    elif case == "short":
        make_wav(path.name, seconds=0.05)
    elif case == "dir":
        path.mkdir()
    with pytest.raises(AudioError, match=problem) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_min_seconds_is_configurable(make_wav):
    path = make_wav("c.wav", seconds=0.05)
    assert load_audio(path, min_seconds=0.01).shape == (800,)
    with pytest.raises(AudioError, match="too short"):
        load_audio(make_wav("e.wav", seconds=0.5), min_seconds=1.0)


def test_duration_errors(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        audio_duration(tmp_path / "nope.wav")
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC garbage")
    with pytest.raises(AudioError, match="header"):
        audio_duration(bad)


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_offset_and_duration_read_a_stretch(make_wav, ext):
    path = make_wav(f"long.{ext}", seconds=3.0, sr=16000)
    full, _ = sf.read(path, dtype="float32")  # reference: soundfile's whole-file decode
    part = load_audio(path, offset=1.25, duration=0.5)
    assert torch.equal(part, torch.from_numpy(full[20000:28000]))
    assert torch.equal(load_audio(path, offset=2.5), torch.from_numpy(full[40000:]))
    with pytest.raises(AudioError, match=r"long\.%s: offset 3\.500 s is outside" % ext):
        load_audio(path, offset=3.5, duration=0.5)


def test_stretch_of_an_off_rate_file_is_resampled(make_wav):
    path = make_wav("off.wav", seconds=2.0, sr=8000)
    full, _ = sf.read(path, dtype="float32")
    expected = taf.resample(torch.from_numpy(full[4000:12000]), 8000, 16000)
    assert torch.allclose(load_audio(path, offset=0.5, duration=1.0), expected, atol=1e-6)
