"""A run killed after epoch 1 and resumed from its checkpoint ends with the weights of an
uninterrupted run (same seed, CPU, deterministic): optimizer, LR schedule, margin and every
RNG (torch, numpy, python, SpecAugment's generator, worker seeds) continue where they stopped."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from r2n_audio.features.augment import SpecAugment
from r2n_audio.training.callbacks import MarginScheduler
from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule

EPOCHS = 2


class Kill(pl.Callback):
    """Stop the process' training abruptly when epoch ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


def _run(corpus, root, extra_callbacks=(), ckpt_path=None):
    pl.seed_everything(0, verbose=False)
    data = SpeakerDataModule(str(corpus / "train"), batch_size=4, num_workers=1,
                             crop_seconds=0.6, seed=3)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny",
                           frontend={"type": "kaldi", "num_mel_bins": 24, "dither": 1.0},
                           spec_augment=SpecAugment(p=0.8, seed=5), optimizer="sgd", lr=0.05,
                           warmup_epochs=0.5, lr_schedule="exponential", final_lr_ratio=0.1,
                           margin=0.0)
    checkpoint = ModelCheckpoint(dirpath=root, filename="{epoch}", save_top_k=-1)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", deterministic=True,
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[MarginScheduler(0.2, 0.0, 2.0, "linear"), checkpoint,
                                    *extra_callbacks])
    torch.manual_seed(1234)  # a resumed process starts from some other RNG state
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, trainer


def test_resume_after_kill_equals_uninterrupted_run(tiny_corpus, tmp_path):
    reference, _ = _run(tiny_corpus, tmp_path / "a")
    with pytest.raises(RuntimeError, match="killed"):
        _run(tiny_corpus, tmp_path / "b", extra_callbacks=[Kill(epoch=1)])
    resumed, trainer = _run(tiny_corpus, tmp_path / "b", ckpt_path=tmp_path / "b" / "epoch=0.ckpt")
    assert trainer.current_epoch == EPOCHS
    assert resumed.loss_fn.margin == pytest.approx(reference.loss_fn.margin)
    ref, got = reference.state_dict(), resumed.state_dict()
    assert ref.keys() == got.keys()
    for key in ref:
        if torch.is_tensor(ref[key]):
            torch.testing.assert_close(got[key], ref[key], rtol=0, atol=0, msg=key)
