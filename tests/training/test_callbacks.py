"""EpochCheckpoint: every epoch's checkpoint under the trainer's root folder."""

from __future__ import annotations

import pytorch_lightning as pl

from r2n_audio.training.callbacks import EpochCheckpoint
from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule


def _fit(corpus, callback, **trainer_kw):
    trainer_kw.setdefault("check_val_every_n_epoch", 5)  # as the configs: must not matter
    data = SpeakerDataModule(str(corpus / "train"), batch_size=8, num_workers=0,
                             crop_seconds=0.5)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny",
                           frontend={"type": "kaldi", "num_mel_bins": 24})
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=1, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[callback], **trainer_kw)
    trainer.fit(module, data)


def test_checkpoints_follow_the_root_dir(tiny_corpus, tmp_path):
    _fit(tiny_corpus, EpochCheckpoint(), default_root_dir=str(tmp_path / "run_a"))
    names = sorted(p.name for p in (tmp_path / "run_a" / "checkpoints").iterdir())
    assert names == ["epoch=000.ckpt", "epoch=001.ckpt", "last.ckpt"]
    _fit(tiny_corpus, EpochCheckpoint(subdir="lm/checkpoints"),
         default_root_dir=str(tmp_path / "run_a"))
    assert len(list((tmp_path / "run_a" / "lm" / "checkpoints").glob("*.ckpt"))) == 3
    _fit(tiny_corpus, EpochCheckpoint(dirpath=str(tmp_path / "explicit")),
         default_root_dir=str(tmp_path / "run_b"))
    assert len(list((tmp_path / "explicit").glob("*.ckpt"))) == 3
    assert not (tmp_path / "run_b" / "checkpoints").exists()
