"""Augmentation: shapes, probabilities, seeds, SNR measured on the output, hand-worked RIRs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2n_audio.errors import R2NError
from r2n_audio.features.augment import (MUSAN_SNR, AddNoise, AugmentChain, OneOf, Reverberate,
                                        SpecAugment, SpeedPerturb)

SR = 16000


def _snr(clean: torch.Tensor, out: torch.Tensor) -> float:
    added = (out - clean).double()
    return float(10 * torch.log10(clean.double().pow(2).mean() / added.pow(2).mean()))


@pytest.fixture
def musan(make_wav, rng, tmp_path):
    for category, count in (("noise", 2), ("music", 2), ("speech", 3)):
        for i in range(count):
            seconds = 0.4 if i == 0 else 1.5  # one file shorter than the speech: tiled
            make_wav(f"musan/{category}/{category}-{i}.wav",
                     data=0.5 * rng.uniform(-1, 1, int(seconds * SR)))
    return tmp_path / "musan"


@pytest.fixture
def speech(rng):
    t = torch.arange(SR) / SR
    return (0.3 * torch.sin(2 * np.pi * 220 * t) + 0.01 * torch.from_numpy(
        rng.standard_normal(SR))).float()


@pytest.mark.parametrize("category", ["noise", "music", "speech"])
def test_noise_snr_is_as_drawn(musan, speech, category):
    lo, hi = MUSAN_SNR[category]
    for snr in (lo, hi):
        aug = AddNoise(musan, categories={category: (snr, snr)}, seed=1)
        out = aug(speech)
        assert out.shape == speech.shape and out.dtype == speech.dtype
        assert abs(_snr(speech, out) - snr) < 0.5
    aug = AddNoise(musan, categories={category: (lo, hi)}, seed=2)
    for _ in range(5):
        assert lo - 0.5 < _snr(speech, aug(speech)) < hi + 0.5


def test_default_snr_ranges_are_wespeakers():
    # wespeaker/dataset/processor.py, add_reverb_noise: noise 0-15, speech 10-30, music 5-15.
    assert MUSAN_SNR == {"noise": (0.0, 15.0), "music": (5.0, 15.0), "speech": (10.0, 30.0)}


TONES = {"noise": (300, 410), "music": (620, 730), "speech": (1000, 1330, 1770)}  # Hz


@pytest.fixture
def tone_musan(make_wav, tmp_path):
    """MUSAN layout whose files are pure tones, one frequency per file (2 / 2 / 3 files)."""
    t = np.arange(int(1.5 * SR)) / SR
    for category, freqs in TONES.items():
        for f in freqs:
            make_wav(f"tones/{category}/{f}.wav", data=0.5 * np.sin(2 * np.pi * f * t))
    return tmp_path / "tones"


def _tones_added(clean: torch.Tensor, out: torch.Tensor) -> set[int]:
    """Frequencies (Hz) present in ``out - clean`` (1 s: one FFT bin per Hz, no leakage)."""
    spectrum = torch.fft.rfft((out - clean).double()).abs()
    return set(torch.nonzero(spectrum > 0.1 * spectrum.max()).flatten().tolist())


@pytest.mark.parametrize("weighting,expected", [
    ("files", {"noise": 2 / 7, "music": 2 / 7, "speech": 3 / 7}),
    ("categories", {"noise": 1 / 3, "music": 1 / 3, "speech": 1 / 3})])
def test_category_weighting_by_file_count(tone_musan, speech, weighting, expected):
    aug = AddNoise(tone_musan, weighting=weighting, seed=0)
    assert aug.probabilities == pytest.approx(expected)
    owner = {f: c for c, freqs in TONES.items() for f in freqs}
    draws = 700
    seen = [owner[f] for _ in range(draws) for f in _tones_added(speech, aug(speech))]
    assert len(seen) == draws  # one file each time (babble of one speaker by default)
    for category, p in expected.items():  # 3 binomial standard deviations
        assert abs(seen.count(category) / draws - p) < 3 * np.sqrt(p * (1 - p) / draws)


def test_babble_sums_the_drawn_number_of_speech_files(tone_musan, speech):
    for count in (1, 2, 3):
        aug = AddNoise(tone_musan, categories={"speech": (10.0, 10.0)},
                       babble_speakers=(count, count), seed=count)
        for _ in range(5):
            out = aug(speech)
            assert len(_tones_added(speech, out)) == count
            assert _tones_added(speech, out) <= set(TONES["speech"])
            assert abs(_snr(speech, out) - 10.0) < 0.01  # the SNR holds for the sum
    with pytest.raises(R2NError, match="babble_speakers"):
        AddNoise(tone_musan, babble_speakers=(0, 2))
    with pytest.raises(R2NError, match="weighting"):
        AddNoise(tone_musan, weighting="speakers")


def test_noise_probability_and_seed(musan, speech):
    aug = AddNoise(musan, p=0.3, seed=0)
    changed = [not torch.equal(aug(speech), speech) for _ in range(400)]
    assert abs(np.mean(changed) - 0.3) < 0.07  # 3 binomial standard deviations
    a, b = AddNoise(musan, seed=5), AddNoise(musan, seed=5)
    outs_a, outs_b = [a(speech) for _ in range(3)], [b(speech) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b))
    a.reseed(6)
    assert not torch.equal(a(speech), AddNoise(musan, seed=5)(speech))


def test_missing_or_empty_folders_are_clear_errors(musan, tmp_path):
    with pytest.raises(R2NError, match="nowhere"):
        AddNoise(tmp_path / "nowhere")
    (tmp_path / "empty" / "noise").mkdir(parents=True)
    with pytest.raises(R2NError, match=r"empty.noise.*no audio files"):
        AddNoise(tmp_path / "empty", categories={"noise": (0, 15)})
    with pytest.raises(R2NError, match=r"noise folder has no audio.*music folder not found"):
        AddNoise(tmp_path / "empty")
    with pytest.raises(R2NError, match="RIR folder not found"):
        Reverberate(tmp_path / "rirs")
    with pytest.raises(R2NError, match="RIR folder has no audio"):
        Reverberate(tmp_path / "empty")


def test_reverb_matches_direct_convolution_aligned_to_direct_path(make_wav, speech, tmp_path):
    rir = np.zeros(800)
    rir[30], rir[130], rir[700] = 0.8, -0.3, 0.1  # direct path at 30, two reflections
    make_wav("rirs/room/r1.wav", data=rir, subtype="FLOAT")
    out = Reverberate(tmp_path / "rirs", seed=0)(speech)
    unit = rir / np.sqrt((rir ** 2).sum())
    expected = np.convolve(speech.numpy().astype(np.float64), unit)[30:30 + SR]
    assert out.shape == speech.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    never = Reverberate(tmp_path / "rirs", p=0.0)
    assert torch.equal(never(speech), speech)


def test_speed_perturb_changes_length_and_pitch():
    t = torch.arange(SR) / SR
    tone = torch.sin(2 * np.pi * 1000 * t)
    speed = SpeedPerturb(p=1.0, seed=0)
    for index, factor in ((1, 0.9), (2, 1.1)):
        out = speed.apply(tone, index)
        assert abs(out.numel() - SR / factor) <= 1
        spectrum = torch.fft.rfft(out * torch.hann_window(out.numel()))
        peak_hz = int(spectrum.abs().argmax()) * SR / out.numel()
        assert abs(peak_hz - 1000 * factor) < 3
    assert torch.equal(speed.apply(tone, 0), tone)
    draws = SpeedPerturb(seed=3)
    counts = np.bincount([draws.choose() for _ in range(900)], minlength=3) / 900
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.05)
    with pytest.raises(R2NError, match="1.0"):
        SpeedPerturb(speeds=(0.9, 1.1))


def test_spec_augment_masks_inside_valid_frames():
    feats = torch.randn(64, 50, 20) + 10.0
    lengths = torch.randint(5, 51, (64,))
    valid = torch.arange(50)[None, :] < lengths[:, None]
    feats = feats * valid[..., None]
    aug = SpecAugment(num_time_masks=2, max_time_width=6, num_freq_masks=1, max_freq_width=4,
                      p=1.0, seed=0)
    out = aug(feats, lengths)
    assert out.shape == feats.shape
    assert torch.equal(out[~valid], feats[~valid])  # padding untouched
    zero = (out == 0) & valid[..., None]
    for b in range(64):
        n = int(lengths[b])
        time_masked = zero[b, :n].all(1)
        if time_masked.all():  # short utterances can be masked entirely
            continue
        freq_masked = zero[b, :n].all(0)
        assert int(time_masked.sum()) <= 12 and int(freq_masked.sum()) <= 4
        # every zero is explained by a masked frame or a masked bin
        assert torch.equal(zero[b, :n], time_masked[:, None] | freq_masked[None, :])
    same = SpecAugment(num_time_masks=2, max_time_width=6, num_freq_masks=1,
                       max_freq_width=4, p=1.0, seed=0)(feats, lengths)
    assert torch.equal(out, same)


def test_spec_augment_probability():
    feats = torch.randn(2000, 30, 40) + 10.0
    out = SpecAugment(max_time_width=10, max_freq_width=8, p=0.6, seed=1)(feats)
    changed = (out != feats).flatten(1).any(1).float().mean().item()
    # a drawn mask can have width 0 on both axes (1/11 * 1/9), so slightly fewer change
    assert abs(changed - 0.6 * (1 - 1 / 99)) < 0.04


def test_chain_and_one_of_reseed(musan, make_wav, speech, tmp_path):
    rir = np.zeros(100)
    rir[0], rir[50] = 1.0, 0.5
    make_wav("rirs/r.wav", data=rir, subtype="FLOAT")

    def build():
        return AugmentChain(OneOf(AddNoise(musan), Reverberate(tmp_path / "rirs"), p=0.6),
                            AddNoise(musan, categories={"noise": (10, 10)}, p=0.5))
    a, b = build(), build()
    a.reseed(11)
    b.reseed(11)
    for _ in range(5):
        x, y = a(speech), b(speech)
        assert x.shape == speech.shape and torch.equal(x, y)
    b.reseed(12)
    assert any(not torch.equal(a(speech), b(speech)) for _ in range(5))


def test_noise_from_a_long_file_is_a_contiguous_stretch_of_it(make_wav, rng, speech):
    """Only the needed stretch is decoded: it must still be a stretch of the file."""
    import soundfile as sf

    long = make_wav("long/noise/n.wav", data=0.5 * rng.uniform(-1, 1, 10 * SR))
    whole = torch.from_numpy(sf.read(long, dtype="float32")[0])
    aug = AddNoise(long.parent.parent, categories={"noise": (5.0, 5.0)}, seed=3)
    for _ in range(3):
        segment = aug._segment(str(long), speech.numel(), SR)
        starts = torch.nonzero(whole[:-speech.numel() + 1] == segment[0]).flatten().tolist()
        assert any(torch.equal(whole[s:s + speech.numel()], segment) for s in starts)
