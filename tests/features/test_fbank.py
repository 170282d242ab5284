"""Fbank and CMN against torchaudio's Kaldi fbank, kaldi-native-fbank and hand-worked values."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from r2n_audio.errors import R2NError
from r2n_audio.features.fbank import CMN, Fbank

kaldi = pytest.importorskip("torchaudio.compliance.kaldi")

GRID = list(itertools.product([40, 80], [True, False], ["povey", "hamming"], [8000, 16000],
                              [0.0, 0.97], [True, False]))


def _signal(n: int, sr: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Speech-like test signal: two drifting tones, noise, a DC offset, silence at the end."""
    g = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (180 + 40 * t) * t) + 0.1 * np.sin(2 * np.pi * 1100 * t)
    x = x + 0.05 * g.standard_normal(n) + 0.02
    x[int(n * 0.9):] = 1e-4 * g.standard_normal(n - int(n * 0.9))
    return torch.from_numpy(x).to(dtype)


def _lengths(sr: int, combo_index: int) -> list[int]:
    """Edge lengths around whole frames, one odd length, and 20 s for two combinations only."""
    window, shift = sr * 25 // 1000, sr * 10 // 1000
    lengths = [window - 1, window, window + shift - 1, window + shift, int(1.37 * sr) + 3]
    if combo_index in (0, len(GRID) - 1):
        lengths.append(20 * sr)
    return lengths


def _batch(lengths: list[int], sr: int, dtype: torch.dtype) -> torch.Tensor:
    batch = torch.full((len(lengths), max(lengths)), 0.5, dtype=dtype)  # loud padding on purpose
    for i, n in enumerate(lengths):
        batch[i, :n] = _signal(n, sr, i, dtype)
    return batch


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("combo", range(len(GRID)))
def test_matches_torchaudio_grid(combo, dtype):
    bins, snip, window, sr, preemph, dc = GRID[combo]
    opts = dict(num_mel_bins=bins, snip_edges=snip, window_type=window, sample_frequency=sr,
                preemphasis_coefficient=preemph, remove_dc_offset=dc)
    lengths = _lengths(sr, combo)
    waves = _batch(lengths, sr, dtype)
    feats, frames = Fbank(**opts)(waves, torch.tensor(lengths))
    assert feats.dtype == dtype and feats.shape[2] == bins
    for i, n in enumerate(lengths):
        if n < sr * 25 // 1000:  # torchaudio refuses; under snip_edges Kaldi gives no frame
            assert int(frames[i]) == (0 if snip else (n + sr // 200) // (sr // 100))
            continue
        ref = kaldi.fbank(waves[i:i + 1, :n], **opts)
        assert int(frames[i]) == ref.shape[0]
        got = feats[i, :ref.shape[0]]
        if dtype == torch.float64:
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-8)
        else:
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-3)
        assert not feats[i, ref.shape[0]:].any(), "padded frames must be zero"


@pytest.mark.parametrize("opts", [
    dict(use_energy=True),
    dict(use_energy=True, raw_energy=False, energy_floor=0.0),
    dict(use_energy=True, htk_compat=True, energy_floor=2.0),
    dict(use_log_fbank=False, use_power=False),
    dict(round_to_power_of_two=False, frame_length=24.0, window_type="hanning"),
    dict(window_type="rectangular", low_freq=100.0, high_freq=-400.0, frame_shift=12.5),
    dict(window_type="blackman", blackman_coeff=0.4, high_freq=7000.0),
])
def test_other_options_match_torchaudio(opts):
    lengths = [16000, 5000, 1111]
    waves = _batch(lengths, 16000, torch.float64)
    feats, frames = Fbank(**opts)(waves, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        ref = kaldi.fbank(waves[i:i + 1, :n], **opts)
        torch.testing.assert_close(feats[i, :int(frames[i])], ref, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("block", [7, 400, 10**9])  # split utterances, groups, whole batch
@pytest.mark.parametrize("snip", [True, False])
def test_padded_batch_equals_single_items(snip, block):
    fbank = Fbank(num_mel_bins=80, window_type="hamming", snip_edges=snip)
    fbank.cpu_block_frames = block
    lengths = [12345, 400, 16000, 399, 7000]
    waves = _batch(lengths, 16000, torch.float32)
    feats, frames = fbank(waves, torch.tensor(lengths))
    assert feats.shape[1] == int(frames.max())
    for i, n in enumerate(lengths):
        single, single_frames = fbank(waves[i:i + 1, :n])
        assert int(single_frames[0]) == int(frames[i])
        torch.testing.assert_close(feats[i, :int(frames[i])], single[0], rtol=0, atol=1e-5)
        if n >= 400:
            ref = kaldi.fbank(waves[i:i + 1, :n], num_mel_bins=80, window_type="hamming",
                              snip_edges=snip)
            torch.testing.assert_close(feats[i, :int(frames[i])], ref, rtol=0, atol=1e-3)
        assert not feats[i, int(frames[i]):].any()


def test_under_one_window_snip_edges_gives_zero_frames():
    fbank = Fbank()
    with pytest.raises(AssertionError):  # torchaudio refuses; Kaldi outputs no frame
        kaldi.fbank(torch.randn(1, 399))
    feats, frames = fbank(torch.randn(2, 399), torch.tensor([399, 10]))
    assert feats.shape == (2, 0, 23) and frames.tolist() == [0, 0]
    feats, frames = fbank(torch.randn(2, 500), torch.tensor([500, 399]))
    assert frames.tolist() == [1, 0] and not feats[1].any()


@pytest.mark.parametrize("n", [60, 100, 150, 250, 399, 1000])
def test_snip_edges_false_short_inputs_match_kaldi_native_fbank(n):
    """Under one window Kaldi reflects (repeatedly) inside the utterance; torchaudio raises."""
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.mel_opts.num_bins = 40
    x = (_signal(n, 16000, 7, torch.float64) * 32768).float()
    online = knf.OnlineFbank(opts)
    online.accept_waveform(16000, x.tolist())
    online.input_finished()
    ref = np.array([online.get_frame(i) for i in range(online.num_frames_ready)])
    padded = torch.cat([x, torch.full((300,), 1e4)]).unsqueeze(0)  # padding must not leak in
    feats, frames = Fbank(num_mel_bins=40, snip_edges=False)(padded, torch.tensor([n]))
    assert int(frames[0]) == len(ref) == (n + 80) // 160
    np.testing.assert_allclose(feats[0, :len(ref)].numpy(), ref.reshape(-1, 40), atol=1e-3)


def test_waveform_scale_is_int16_convention():
    x = _signal(16000, 16000, 3, torch.float64).unsqueeze(0)
    feats, _ = Fbank(waveform_scale=32768.0, energy_floor=0.0)(x)
    ref = kaldi.fbank(x * 32768.0, energy_floor=0.0)
    torch.testing.assert_close(feats[0], ref, rtol=1e-4, atol=1e-8)


def test_dither_is_seeded_and_training_only():
    fbank = Fbank(dither=1.0, waveform_scale=32768.0)
    x = _signal(8000, 16000, 4, torch.float32).unsqueeze(0)
    a, _ = fbank(x, generator=torch.Generator().manual_seed(5))
    b, _ = fbank(x, generator=torch.Generator().manual_seed(5))
    c, _ = fbank(x, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-4
    clean = kaldi.fbank(x * 32768.0)
    torch.testing.assert_close(fbank.eval()(x)[0][0], clean, rtol=0, atol=1e-3)


def test_bad_options_are_clear_errors():
    with pytest.raises(R2NError, match="window_type"):
        Fbank(window_type="hann")
    with pytest.raises(R2NError, match="high_freq"):
        Fbank(high_freq=9000.0)
    with pytest.raises(R2NError, match="even"):
        Fbank(round_to_power_of_two=False, frame_length=25.0625)
    with pytest.raises(R2NError, match=r"\(B, N\)"):
        Fbank()(torch.zeros(16000))


def test_cmn_matches_numpy_over_valid_frames():
    g = np.random.default_rng(0)
    feats = torch.from_numpy(g.standard_normal((3, 10, 4)) * 3 + 5)
    lengths = torch.tensor([10, 6, 0])
    out = CMN()(feats, lengths)
    out_var = CMN(norm_vars=True)(feats, lengths)
    for i, n in enumerate(lengths.tolist()):
        x = feats[i, :n].numpy()
        if n:
            np.testing.assert_allclose(out[i, :n].numpy(), x - x.mean(0), atol=1e-12)
            np.testing.assert_allclose(out_var[i, :n].numpy(), (x - x.mean(0)) / x.std(0),
                                       atol=1e-12)
        assert not out[i, n:].any() and not out_var[i, n:].any()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu():
    fbank = Fbank(num_mel_bins=80, snip_edges=False)
    lengths = torch.tensor([16000, 9000])
    waves = _batch(lengths.tolist(), 16000, torch.float32)
    cpu, frames = fbank(waves, lengths)
    gpu, gpu_frames = fbank.cuda()(waves.cuda(), lengths.cuda())
    assert torch.equal(frames, gpu_frames.cpu())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-3)


@pytest.mark.parametrize("snip", [True, False])
def test_traced_graph_matches_torchaudio_on_new_shapes(snip):
    """The export path (tracing: index framing, float64 DFT) generalises past the example."""
    opts = dict(num_mel_bins=40, snip_edges=snip, use_energy=True)
    example = (0.1 * torch.randn(2, 8000), torch.tensor([8000, 6000]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shapes
        traced = torch.jit.trace(Fbank(**opts).eval(), example, check_trace=False)
    lengths = [20000, 9001, 400]
    waves = _batch(lengths, 16000, torch.float32)
    feats, frames = traced(waves, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        ref = kaldi.fbank(waves[i:i + 1, :n], **opts)
        assert int(frames[i]) == ref.shape[0]
        torch.testing.assert_close(feats[i, :ref.shape[0]], ref, rtol=0, atol=1e-3)
        assert not feats[i, ref.shape[0]:].any()
