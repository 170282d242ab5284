"""Mean and AS-Norm cohort from training-length random crops (r2n_audio.training.cohort)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from r2n_audio.data.manifests import read_utt2spk, read_wav_scp
from r2n_audio.inference.bundle import save_bundle
from r2n_audio.inference.embedder import Embedder
from r2n_audio.training.cohort import crop_embeddings, main, normalisation_statistics
from r2n_audio.training.module import SpeakerModule

SR = 16000


@pytest.fixture
def embedder():
    torch.manual_seed(0)
    module = SpeakerModule(8, backbone="ecapa_tdnn_tiny",
                           frontend={"type": "kaldi", "num_mel_bins": 24})
    return Embedder.from_pretrained(module.bundle(), device="cpu")


def _recorded_crops(embedder, monkeypatch, wavs, **kw):
    seen = []
    original = embedder.embed_batch

    def record(batch, *args, **kwargs):
        seen.append(batch.clone())
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(embedder, "embed_batch", record)
    out = crop_embeddings(embedder, wavs, **kw)
    return out, torch.cat(seen)


def test_each_utterance_gives_one_contiguous_training_length_crop(tiny_corpus, embedder,
                                                                  monkeypatch):
    wavs = dict(sorted(read_wav_scp(tiny_corpus / "train" / "wav.scp").items())[:10])
    out, crops = _recorded_crops(embedder, monkeypatch, wavs, crop_seconds=0.5, batch_size=4,
                                 workers=2)
    assert list(out) == sorted(wavs) and crops.shape == (10, SR // 2)
    for key, crop in zip(sorted(wavs), crops):
        whole = torch.from_numpy(sf.read(wavs[key], dtype="float32")[0])
        assert len(whole) > len(crop)  # 1-2 s utterances: a crop, not the whole of it
        starts = torch.nonzero(whole[:len(whole) - len(crop) + 1] == crop[0]).flatten()
        assert any(torch.equal(whole[s:s + len(crop)], crop) for s in starts.tolist()), key
    np.testing.assert_allclose(np.stack(list(out.values())),
                               embedder.embed_batch(crops), rtol=1e-5, atol=1e-6)
    # The crops depend on the seed only, not on batching or threads.
    again, same = _recorded_crops(embedder, monkeypatch, wavs, crop_seconds=0.5, batch_size=3,
                                  workers=1)
    assert torch.equal(same, crops)
    _, other = _recorded_crops(embedder, monkeypatch, wavs, crop_seconds=0.5, seed=1)
    assert not torch.equal(other, crops)


def test_short_utterances_are_tiled_to_the_crop_length(tmp_path, embedder, monkeypatch):
    short = 0.1 * np.sin(2 * np.pi * 300 * np.arange(SR // 4) / SR)
    sf.write(tmp_path / "s.wav", short.astype(np.float32), SR)
    _, crops = _recorded_crops(embedder, monkeypatch, {"s": tmp_path / "s.wav"},
                               crop_seconds=1.0)
    expected = np.tile(sf.read(tmp_path / "s.wav", dtype="float32")[0], 4)
    np.testing.assert_array_equal(crops[0].numpy(), expected)


def test_normalisation_statistics_hand_worked():
    emb = {"a1": np.array([1.0, 0.0]), "a2": np.array([3.0, 2.0]), "b1": np.array([0.0, 4.0])}
    mean, cohort = normalisation_statistics(emb, {"a1": "A", "a2": "A", "b1": "B"})
    np.testing.assert_allclose(mean, [4 / 3, 2.0])
    np.testing.assert_allclose(cohort, [[2.0, 1.0], [0.0, 4.0]])
    assert mean.dtype == cohort.dtype == np.float32


def test_main_writes_mean_and_cohort(tiny_corpus, embedder, tmp_path, capsys):
    module = SpeakerModule(8, backbone="ecapa_tdnn_tiny",
                           frontend={"type": "kaldi", "num_mel_bins": 24})
    save_bundle(module.bundle(), tmp_path / "model.pt")
    args = ["--model", str(tmp_path / "model.pt"), "--data", str(tiny_corpus / "train"),
            "--crop-seconds", "0.5", "--device", "cpu", "--mean", str(tmp_path / "mean.npy"),
            "--cohort", str(tmp_path / "cohort.npy")]
    assert main(args) == 0
    speakers = len(set(read_utt2spk(tiny_corpus / "train" / "utt2spk").values()))
    assert np.load(tmp_path / "mean.npy").shape == (module.backbone.embed_dim,)
    assert np.load(tmp_path / "cohort.npy").shape == (speakers, module.backbone.embed_dim)
    assert "cohort of 8 speakers" in capsys.readouterr().out
    bad = ["--model", str(tmp_path / "missing.pt")] + args[2:]
    bad[bad.index(str(tmp_path / "mean.npy"))] = str(tmp_path / "m2.npy")
    assert main(bad) == 2
    assert not (tmp_path / "m2.npy").exists()
    assert "missing.pt" in capsys.readouterr().err
