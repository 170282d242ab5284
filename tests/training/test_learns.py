"""Training learns, in the default suite: a tiny model on a tiny corpus in well under a minute,
embedded and scored through the recipes' path (Embedder, scoring.trials).

The voices are made here to be learnable that fast: a speaker is a pitch (90-240 Hz), an
utterance a random vowel (three formants) with pitch wobble and a syllable envelope. What is
said dominates the spectrum, so an untrained network mostly hears the vowel (EER ~28%); a
trained one has learnt the pitch of 16 speakers and separates 8 new ones (EER ~9%). The
synthetic corpus proper needs hundreds of speakers to generalise (the slow mini-recipe test).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import soundfile as sf

from r2n_audio.data.manifests import read_trials
from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule
from r2n_audio.training.recipe import embed_utterances, score_and_measure

SR, TRAIN_SPEAKERS, TEST_SPEAKERS, UTTS = 16000, 16, 8, 6


def _utterance(f0: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(SR) / SR
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    k = np.arange(1, int(7000 / f0))
    vowel = 300 + 2500 * rng.random(3)
    amp = sum(1 / (1 + ((k * f0 - fm) / 150) ** 2) for fm in vowel) / k
    x = (amp[:, None] * np.sin(k[:, None] * phase[None])).sum(0)
    x *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    return 0.3 * x / np.abs(x).max() + 0.003 * rng.standard_normal(SR)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A data dir of the training speakers and a trial list over the held-out ones."""
    root = tmp_path_factory.mktemp("pitch_voices")
    wavs, speaker = {}, {}
    for s in range(TRAIN_SPEAKERS + TEST_SPEAKERS):
        f0 = 90 + 150 * np.random.default_rng([7, s]).random()
        for u in range(UTTS):
            key = f"s{s:02d}/u{u}"
            path = root / f"s{s:02d}_{u}.wav"
            sf.write(path, _utterance(f0, np.random.default_rng([7, s, u])).astype(np.float32),
                     SR)
            wavs[key], speaker[key] = str(path), f"s{s:02d}"
    train = [k for k in wavs if int(k[1:3]) < TRAIN_SPEAKERS]
    test = [k for k in wavs if int(k[1:3]) >= TRAIN_SPEAKERS]
    (root / "wav.scp").write_text("".join(f"{k} {wavs[k]}\n" for k in train))
    (root / "utt2spk").write_text("".join(f"{k} {speaker[k]}\n" for k in train))
    (root / "trials").write_text("".join(
        f"{a} {b} {'target' if speaker[a] == speaker[b] else 'nontarget'}\n"
        for a, b in itertools.combinations(test, 2)))
    return root, {k: wavs[k] for k in test}


def _eer(module: SpeakerModule, root: Path, test: dict[str, str]) -> float:
    embeddings = embed_utterances(module, test, "cpu")
    mean = np.mean(np.stack(list(embeddings.values())), axis=0)
    metrics, _, _ = score_and_measure(read_trials(root / "trials"), embeddings, mean=mean)
    return metrics["eer"]


def test_training_lowers_eer_far_below_untrained(corpus, trainer_kwargs) -> None:
    root, test = corpus
    pl.seed_everything(0)
    data = SpeakerDataModule(str(root), batch_size=16, num_workers=0, crop_seconds=1.0)
    module = SpeakerModule(TRAIN_SPEAKERS, backbone="ecapa_tdnn_tiny",
                           frontend={"type": "kaldi", "num_mel_bins": 40, "cmn": True},
                           optimizer="adamw", lr=0.01, warmup_epochs=1.0,
                           lr_schedule="cosine", final_lr_ratio=0.02, margin=0.0, scale=30.0)
    untrained = _eer(module, root, test)
    pl.Trainer(max_epochs=30, enable_checkpointing=False, **trainer_kwargs).fit(module, data)
    trained = _eer(module, root, test)
    print(f"held-out speakers: EER untrained {100 * untrained:.1f}%, trained "
          f"{100 * trained:.1f}%")
    assert untrained >= 0.2
    assert trained <= untrained / 2
