"""SpeechBrainFrontend against SpeechBrain 1.1.2's Fbank + InputNormalization (the reference)."""

from __future__ import annotations

import pytest
import torch

from r2n_audio.features.speechbrain_fbank import SpeechBrainFrontend

sb_features = pytest.importorskip("speechbrain.lobes.features")
sb_processing = pytest.importorskip("speechbrain.processing.features")


def _reference(wav: torch.Tensor) -> torch.Tensor:
    fbank = sb_features.Fbank(n_mels=80)
    norm = sb_processing.InputNormalization(norm_type="sentence", std_norm=False)
    return norm(fbank(wav), torch.ones(wav.shape[0]))


@pytest.mark.parametrize("n_samples", [16000, 48000, 12345, 800])
def test_matches_speechbrain(n_samples: int) -> None:
    gen = torch.Generator().manual_seed(n_samples)
    wav = 0.1 * torch.randn(1, n_samples, generator=gen)
    wav[:, : n_samples // 4] *= 1e-3  # a quiet stretch exercises the 80 dB floor
    feats, frames = SpeechBrainFrontend()(wav)
    ref = _reference(wav)
    assert feats.shape == ref.shape
    assert frames.tolist() == [ref.shape[1]] == [1 + n_samples // 160]
    assert (feats - ref).abs().max().item() <= 1e-4


def test_without_mean_norm_matches_raw_fbank() -> None:
    wav = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    feats, _ = SpeechBrainFrontend(mean_norm=False)(wav)
    assert torch.allclose(feats, sb_features.Fbank(n_mels=80)(wav), atol=1e-4)


def test_padded_batch_equals_single_utterances() -> None:
    gen = torch.Generator().manual_seed(1)
    waves = [0.1 * torch.randn(n, generator=gen) for n in (16000, 9001, 20000)]
    batch = torch.full((3, 20000), 0.7)  # non-zero padding must not leak into valid frames
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    fe = SpeechBrainFrontend()
    feats, frames = fe(batch, torch.tensor([len(w) for w in waves]))
    for i, w in enumerate(waves):
        alone, n_frames = fe(w[None])
        assert frames[i] == n_frames[0]
        assert torch.allclose(feats[i, : frames[i]], alone[0], atol=1e-5)
        assert feats[i, frames[i]:].abs().max() == 0 if frames[i] < feats.shape[1] else True


def test_config_round_trip_and_onnx_path() -> None:
    fe = SpeechBrainFrontend(n_mels=40, top_db=60.0)
    cfg = fe.config()
    assert cfg["type"] == "speechbrain"
    again = SpeechBrainFrontend.from_config(cfg)
    assert again.config() == cfg
    wav = 0.1 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(2))
    # The float64 DFT used inside exported graphs agrees with torch.stft.
    eager, _ = fe(wav)
    power_fft = fe._power(wav)
    frames = torch.nn.functional.pad(wav, (200, 200)).unfold(1, 400, 160)
    re, im = (frames.double() @ fe.dft_basis).chunk(2, -1)
    assert torch.allclose((re * re + im * im).float(), power_fft, rtol=1e-4, atol=1e-6)
    assert eager.shape == (2, 26, 40)
