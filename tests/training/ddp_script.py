"""Run by ``test_ddp.py`` in a subprocess (Lightning's DDP launcher re-executes this script for
rank 1): two training steps with ``strategy="ddp"`` on 2 CPU processes (gloo), each rank
writing its per-step losses to ``OUT/losses_rank{R}.json``.

Usage: ``python ddp_script.py CORPUS OUT BATCH``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule

FRONTEND = {"type": "kaldi", "num_mel_bins": 24, "cmn": True}


class FreezeBatchNorm(pl.Callback):
    """BatchNorm in eval mode (running statistics): on CPU there is no SyncBatchNorm, and
    per-rank batch statistics would differ from those of the doubled batch by design."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        for m in pl_module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


class RecordLoss(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def build(corpus: Path, batch: int, seed: int = 0):
    """Data and model shared by the DDP run and the single-process reference.

    Crops longer than any utterance make every item deterministic (repetition padding), so
    the only randomness is the shuffling, which both runs draw the same way.
    """
    pl.seed_everything(seed, verbose=False)
    data = SpeakerDataModule(str(corpus / "train"), batch_size=batch, num_workers=0,
                             crop_seconds=2.5, seed=seed)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny", frontend=FRONTEND,
                           optimizer="sgd", lr=0.01, warmup_epochs=0, lr_schedule="constant",
                           margin=0.2)
    return data, module


def main(corpus: str, out: str, batch: int) -> None:
    torch.set_num_threads(1)
    data, module = build(Path(corpus), batch)
    record = RecordLoss()
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=2,
                         logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[record, FreezeBatchNorm()], num_sanity_val_steps=0)
    trainer.fit(module, data)
    path = Path(out) / f"losses_rank{trainer.global_rank}.json"
    path.write_text(json.dumps(record.losses))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
