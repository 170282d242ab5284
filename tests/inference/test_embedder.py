"""Embedder: loading, batch independence, windowing of long inputs, normalisation, bf16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from r2n_audio.errors import AudioError, ModelError
from r2n_audio.inference.bundle import load_bundle
from r2n_audio.inference.embedder import Embedder


def _waves(seed: int, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=gen) for n in sizes]


def _reference(embedder: Embedder, wave: torch.Tensor) -> np.ndarray:
    """Front-end and network on one unpadded input, then the bundle's normalisation."""
    with torch.no_grad():
        feats, frames = embedder.frontend(wave[None], torch.tensor([wave.shape[0]]))
        return embedder.model(feats, frames)[0].numpy()


@pytest.mark.parametrize("model,frontend", [("ecapa_tdnn_tiny", "kaldi"),
                                           ("ecapa_tdnn_tiny", "speechbrain"),
                                           ("resnet34_tiny", "kaldi")])
def test_batch_composition_does_not_matter(tiny_bundle_factory, model: str, frontend: str) -> None:
    embedder = Embedder.from_pretrained(tiny_bundle_factory(model, frontend), device="cpu")
    waves = _waves(0, (16000, 9000, 23456, 4000))
    alone = np.stack([_reference(embedder, w) for w in waves])
    lengths = torch.tensor([w.shape[0] for w in waves])
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    batched = embedder.embed_batch(padded, lengths)
    assert np.abs(batched - alone).max() <= 1e-5
    small = embedder.embed_batch(padded, lengths, batch_seconds=1.0)  # other groupings
    assert np.abs(small - alone).max() <= 1e-5


def test_long_inputs_are_windowed_and_averaged(tiny_bundle_factory) -> None:
    embedder = Embedder.from_pretrained(tiny_bundle_factory(), device="cpu",
                                        window_seconds=1.0, overlap_seconds=0.25)
    (wave,) = _waves(1, (16000 * 3 + 5000,))
    # Windows of 16000 samples every 12000, the last one aligned with the end.
    starts = [0, 12000, 24000, 36000, wave.shape[0] - 16000]
    expected = np.mean([_reference(embedder, wave[s:s + 16000]) for s in starts], axis=0)
    assert np.abs(embedder.embed_batch(wave[None])[0] - expected).max() <= 1e-5


def test_embedding_normalisation(tiny_bundle_factory) -> None:
    path = tiny_bundle_factory(mean=True, l2=True)
    embedder = Embedder.from_pretrained(path, device="cpu")
    (wave,) = _waves(2, (12000,))
    raw = _reference(embedder, wave) - load_bundle(path)["embedding_norm"]["mean"].numpy()
    out = embedder.embed_batch(wave[None])[0]
    assert np.allclose(out, raw / np.linalg.norm(raw), atol=1e-6)


def test_files_in_input_order_match_single_files(tiny_bundle_factory, make_wav) -> None:
    embedder = Embedder.from_pretrained(tiny_bundle_factory(), device="cpu")
    paths = [make_wav(f"f{i}.wav", seconds=s) for i, s in enumerate((2.0, 0.6, 1.3))]
    together = embedder.embed_files(paths, batch_seconds=2.0)
    for path, vector in zip(paths, together):
        assert np.abs(embedder.embed_file(path) - vector).max() <= 1e-5
    results = list(embedder.iter_files([paths[0], paths[0].with_name("missing.wav")]))
    assert [r.error is None for r in sorted(results)] == [True, False]
    with pytest.raises(AudioError, match="missing.wav"):
        embedder.embed_files([paths[1], paths[0].with_name("missing.wav")])


def test_bf16_is_close_to_fp32(tiny_bundle_factory) -> None:
    path = tiny_bundle_factory()
    fp32 = Embedder.from_pretrained(path, device="cpu")
    bf16 = Embedder.from_pretrained(path, device="cpu", precision="bf16")
    waves = torch.stack(_waves(3, (16000, 16000)))
    a, b = fp32.embed_batch(waves), bf16.embed_batch(waves)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99


def test_bad_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model bundle"):
        Embedder.from_pretrained(tmp_path / "nope.pt")
    raw = tmp_path / "raw.pt"
    torch.save({"conv.weight": torch.zeros(2)}, raw)
    with pytest.raises(ModelError, match="not an r2n-audio bundle"):
        Embedder.from_pretrained(raw)
    with pytest.raises(ModelError, match="precision"):
        Embedder(torch.nn.Linear(2, 2), torch.nn.Identity(), precision="fp8", device="cpu")


def test_readme_api_and_no_lightning(tiny_bundle_factory, make_wav) -> None:
    import subprocess
    import sys

    code = ("import sys; from r2n_audio.inference import Embedder;"
            "a, b = Embedder.from_pretrained(sys.argv[1]).embed_files(sys.argv[2:]);"
            "score = float(a @ b / ((a @ a) * (b @ b)) ** 0.5);"
            "assert -1 <= score <= 1;"
            "assert not {'lightning', 'pytorch_lightning'} & set(sys.modules)")
    paths = [make_wav("x.wav"), make_wav("y.wav", seconds=1.4)]
    subprocess.run([sys.executable, "-c", code, str(tiny_bundle_factory()), *map(str, paths)],
                   check=True)
