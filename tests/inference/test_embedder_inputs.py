"""Embedder on inputs that must not become speakers: silence, DC, NaN, digital-silence padding.

Issue 11 items 5, 6 and 7. Real speech is pyannote.audio's sample recording (a reference
package; missing it fails under CI).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from r2n_audio.errors import AudioError
from r2n_audio.features.frontend import Frontend
from r2n_audio.features.silence import SILENCE_RMS, drop_frames, has_signal
from r2n_audio.inference.bundle import load_bundle, make_bundle, save_bundle
from r2n_audio.inference.embedder import Embedder


def _sample_speech(seconds: float) -> torch.Tensor:
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pyannote.audio (its sample recording is the real speech) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "sample" / "sample.wav"
    data, sr = sf.read(path, dtype="int16", frames=int(seconds * 16000))
    assert sr == 16000
    return torch.from_numpy(data.astype(np.float32) / 32768.0)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("case", ["zeros", "dc", "dither"])
def test_silence_is_no_signal_everywhere(tiny_bundle_factory, make_wav, case) -> None:
    n = 32000
    data = {"zeros": np.zeros(n), "dc": np.full(n, 0.25),
            # +-1 step of 16-bit noise on a DC offset: still below the threshold
            "dither": 0.1 + np.random.default_rng(0).integers(-1, 2, n) / 32768.0}[case]
    path = make_wav(f"{case}.wav", data=data)
    speech = make_wav("speech.wav", seconds=1.0)
    embedder = Embedder.from_pretrained(tiny_bundle_factory(), device="cpu")
    with pytest.raises(AudioError, match="no signal"):
        embedder.embed_file(path)
    results = sorted(embedder.iter_files([speech, path]))
    assert results[0].error is None and np.isfinite(results[0].embedding).all()
    assert results[1].embedding is None and "no signal" in str(results[1].error)
    assert str(path) in str(results[1].error)
    waves = torch.stack([torch.from_numpy(sf.read(p, dtype="float32")[0][:16000])
                         for p in (speech, path)])
    with pytest.raises(AudioError, match="waveform 1: no signal"):
        embedder.embed_batch(waves)
    emb, valid = embedder.embed_batch(waves, return_valid=True)
    assert valid.tolist() == [True, False] and not emb[1].any() and np.isfinite(emb).all()


def test_threshold_is_documented_value() -> None:
    assert SILENCE_RMS == 2.0 / 32768.0
    quiet = torch.zeros(16000)
    quiet[8000:8400] = 3.0 / 32768.0 * torch.tensor([1.0, -1.0]).repeat(200)  # RMS 3 steps
    assert has_signal(quiet) and not has_signal(quiet * 0.5)
    assert not has_signal(torch.zeros(100)) and has_signal(torch.tensor([0.0, 0.5] * 50))


def test_drop_frames_keeps_order_and_lengths() -> None:
    feats = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1) + 1
    keep = torch.tensor([[True, False, True, True, True], [False, True, True, False, False]])
    out, lengths = drop_frames(feats, torch.tensor([4, 5]), keep)
    assert lengths.tolist() == [3, 2]
    assert out[0, :, 0].tolist() == [1, 3, 4, 0, 0] and out[1, :, 0].tolist() == [7, 8, 0, 0, 0]


def test_real_speech_frames_do_not_change() -> None:
    """The imported models' parity: on real speech nothing is dropped."""
    speech = _sample_speech(6.0)[None]
    kept, n_kept = Frontend().eval()(speech)
    every, n_every = Frontend(silence_rms=0.0).eval()(speech)
    assert n_kept.tolist() == n_every.tolist()
    assert torch.equal(kept, every)


def test_digital_silence_padding_is_robust_to_one_step_noise(tiny_bundle_factory) -> None:
    """Real speech padded with exact zeros vs the same plus +-1-step noise: cosine >= 0.99
    (0.87 with every frame kept: the zero frames' log(eps) energies dominated)."""
    speech = _sample_speech(8.0)
    padded = torch.cat([torch.zeros(16000 * 6), speech, torch.zeros(16000 * 6)])
    gen = torch.Generator().manual_seed(0)
    noisy = padded + torch.randint(-1, 2, padded.shape, generator=gen).float() / 32768.0
    embedder = Embedder.from_pretrained(tiny_bundle_factory(), device="cpu",
                                        window_seconds=30.0)
    clean, dithered, alone = embedder.embed_batch(
        torch.stack([padded, noisy, torch.nn.functional.pad(speech, (0, 12 * 16000))]),
        torch.tensor([padded.numel(), padded.numel(), speech.numel()]))
    assert _cos(clean, dithered) >= 0.99
    assert _cos(clean, alone) >= 0.99


def test_nan_model_output_is_a_failed_file(tiny_bundle_factory, make_wav, tmp_path) -> None:
    bundle = load_bundle(tiny_bundle_factory())
    state = dict(bundle["state_dict"])
    last = [k for k in state if k.endswith("bias")][-1]
    state[last] = torch.full_like(state[last], float("nan"))
    broken = tmp_path / "nan.pt"
    save_bundle(make_bundle(bundle["model_name"], bundle["model_args"], state,
                            bundle["frontend"]), broken)
    embedder = Embedder.from_pretrained(broken, device="cpu")
    path = make_wav("a.wav", seconds=1.0)
    with pytest.raises(AudioError, match="NaN or Inf"):
        embedder.embed_file(path)
    (result,) = embedder.iter_files([path])
    assert result.embedding is None and "NaN" in str(result.error)
    with pytest.raises(AudioError, match="NaN or Inf"):
        embedder.embed_batch(torch.full((1, 16000), 0.1) + 0.01 * torch.randn(1, 16000))


def test_embed_batch_refuses_nan_samples_like_embed_file(tiny_bundle_factory) -> None:
    embedder = Embedder.from_pretrained(tiny_bundle_factory(), device="cpu")
    waves = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    waves[1, 9000] = float("nan")
    with pytest.raises(AudioError, match="waveform 1: contains NaN or Inf samples"):
        embedder.embed_batch(waves)
    emb, valid = embedder.embed_batch(waves, return_valid=True)
    assert valid.tolist() == [True, False] and np.isfinite(emb).all()
    # NaN past a row's length is padding, not a sample
    assert np.isfinite(embedder.embed_batch(waves, torch.tensor([16000, 8000]))).all()
