"""Speech activity: Silero through onnxruntime against the silero-vad package's own output."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from r2n_audio.diarization import vad as vad_module
from r2n_audio.diarization.segments import Turn
from r2n_audio.diarization.vad import (EnergyVAD, SileroVAD, level_gain, make_vad,
                                       regions_from_probabilities, regions_from_turns)


@pytest.fixture(scope="module")
def sample_wave(pyannote_sample):
    wave, rate = sf.read(pyannote_sample[0], dtype="float32")
    assert rate == 16000
    return wave


def test_silero_probabilities_match_the_package(sample_wave):
    silero = pytest.importorskip("silero_vad")
    torch = pytest.importorskip("torch")
    reference = silero.load_silero_vad(onnx=True).audio_forward(torch.from_numpy(sample_wave),
                                                                16000).numpy().reshape(-1)
    ours = SileroVAD().probabilities(sample_wave)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def _package_timestamps(wave: np.ndarray, **options) -> list[tuple[int, int]]:
    silero = pytest.importorskip("silero_vad")
    torch = pytest.importorskip("torch")
    found = silero.get_speech_timestamps(torch.from_numpy(wave), silero.load_silero_vad(),
                                         **options)
    return [(d["start"], d["end"]) for d in found]


def _samples(regions: list[tuple[float, float]]) -> list[tuple[int, int]]:
    return [(round(a * 16000), round(b * 16000)) for a, b in regions]


@pytest.mark.parametrize("level", [None, 0.5])
@pytest.mark.parametrize("options", [{}, {"threshold": 0.7, "min_silence_duration_ms": 50,
                                           "speech_pad_ms": 100, "min_speech_duration_ms": 100}])
def test_silero_timestamps_match_get_speech_timestamps(sample_wave, options, level):
    # The level rule, worked here: the 99.9th percentile of |x| over every 4th sample to 0.5.
    gain = 1.0 if level is None else level / np.percentile(np.abs(sample_wave[::4]), 99.9)
    assert level is None or gain > 2  # the sample is quiet enough for the rule to matter
    expected = _package_timestamps((sample_wave * np.float32(gain)).astype(np.float32),
                                   **options)
    ours = SileroVAD(threshold=options.get("threshold", 0.5),
                     min_silence=options.get("min_silence_duration_ms", 100) / 1000,
                     pad=options.get("speech_pad_ms", 30) / 1000,
                     min_speech=options.get("min_speech_duration_ms", 250) / 1000,
                     level=level)(sample_wave)
    assert len(expected) >= 3
    assert _samples(ours) == expected


def test_silero_finds_quiet_speech_at_the_set_level(sample_wave):
    """At -40 dB the package alone loses a sixth of the sample's speech; scaled to the set
    level first, the regions are those of the recording at its own level."""
    quiet = (sample_wave * np.float32(0.01)).astype(np.float32)
    speech = sum(b - a for a, b in _package_timestamps(sample_wave)) / 16000
    assert sum(b - a for a, b in _package_timestamps(quiet)) / 16000 < 0.9 * speech
    vad = SileroVAD()
    ours, loud = _samples(vad(quiet)), _samples(vad(sample_wave))
    assert len(ours) == len(loud) >= 3
    np.testing.assert_allclose(np.array(ours), np.array(loud), atol=512)
    assert sum(b - a for a, b in ours) / 16000 > 0.95 * speech


def test_silero_level_leaves_noise_alone(rng):
    """Faint hiss is lifted by 40 dB at most, and Silero still hears no speech in it."""
    hiss = (1e-5 * rng.standard_normal(16000 * 5)).astype(np.float32)
    assert level_gain(hiss) == 100.0  # 0.5 / 3.3e-5 would be 83 dB
    assert SileroVAD()(hiss) == []
    assert SileroVAD()(np.zeros(16000, dtype=np.float32)) == []


def test_region_rules_hand_worked():
    frame = 512
    probs = np.zeros(100)
    probs[10:30] = 0.9      # speech
    probs[31:33] = 0.05     # 2 frames of silence (64 ms < 100 ms): bridged
    probs[33:40] = 0.9
    probs[40:45] = 0.4      # between the two thresholds: neither speech nor silence
    probs[60:65] = 0.9      # 5 frames = 160 ms <= min_speech 250 ms: dropped
    regions = regions_from_probabilities(probs, 100 * frame, pad=0.0)
    assert regions == [(10 * frame, 45 * frame)]
    padded = regions_from_probabilities(probs, 100 * frame, pad=0.03)
    assert padded == [(10 * frame - 480, 45 * frame + 480)]


def test_padding_splits_narrow_gaps_at_the_middle():
    probs = np.zeros(60)
    probs[5:20] = probs[24:40] = 0.9  # a 4-frame gap (2048 samples) < 2 x 1600 samples of pad
    (a0, b0), (a1, b1) = regions_from_probabilities(probs, 60 * 512, pad=0.1, min_silence=0.05)
    assert b0 == a1 == 20 * 512 + 1024
    assert a0 == 5 * 512 - 1600 and b1 == 40 * 512 + 1600


def test_energy_vad_finds_a_burst_and_nothing_in_noise(rng):
    wave = 0.001 * rng.standard_normal(16000 * 4)
    wave[16000:32000] += 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)
    ((start, end),) = EnergyVAD(pad=0.0)(wave.astype(np.float32))
    assert abs(start - 1.0) < 0.04 and abs(end - 2.0) < 0.04
    assert EnergyVAD()(0.01 * rng.standard_normal(16000 * 4).astype(np.float32)) == []
    assert EnergyVAD()(np.zeros(16000 * 2, np.float32)) == []


def test_oracle_regions_are_the_union_of_turns():
    turns = [Turn(5.0, 7.0, "b"), Turn(0.0, 2.0, "a"), Turn(1.5, 3.0, "b"), Turn(9, 9, "c")]
    assert regions_from_turns(turns) == [(0.0, 3.0), (5.0, 7.0)]


def test_silero_falls_back_to_energy_when_missing(monkeypatch, caplog):
    monkeypatch.setattr(vad_module, "silero_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert isinstance(make_vad("silero"), EnergyVAD)
    assert "energy VAD" in caplog.text
    assert make_vad("none") is None and make_vad("oracle") is None


def test_silero_leaves_torch_threads_alone():
    """The silero-vad package sets torch to one thread when imported; the VAD must not import
    it, or every embedding after it runs on one core. A fresh interpreter: this one may
    have imported the package already (the parity tests above do)."""
    import subprocess
    import sys

    code = ("import numpy as np, torch\n"
            "torch.set_num_threads(3)\n"
            "from r2n_audio.diarization.vad import SileroVAD, silero_available\n"
            "assert silero_available()\n"
            "SileroVAD()(np.zeros(16000, dtype=np.float32))\n"
            "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "3"
