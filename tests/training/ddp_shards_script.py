"""Run by ``test_ddp_shards.py`` in a subprocess (Lightning's DDP launcher re-executes this
script for rank 1): one epoch from tar shards with ``strategy="ddp"`` on 2 CPU processes
(gloo), one DataLoader worker each, every rank writing the utterance keys of its batches to
``OUT/keys_rank{R}.json``.

Usage: ``python ddp_shards_script.py SHARD_LIST OUT``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule


class RecordKeys(pl.Callback):
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches.append(list(batch[2]))
        self.losses.append(float(outputs["loss"]))


def main(shard_list: str, out: str) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    data = SpeakerDataModule(train_shards=shard_list, batch_size=4, num_workers=1,
                             crop_seconds=0.5, speed_perturb=True, seed=0)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny",
                           frontend={"type": "kaldi", "num_mel_bins": 24, "cmn": True},
                           optimizer="sgd", lr=0.01, warmup_epochs=0, lr_schedule="constant")
    record = RecordKeys()
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[record], num_sanity_val_steps=0)
    trainer.fit(module, data)
    path = Path(out) / f"keys_rank{trainer.global_rank}.json"
    path.write_text(json.dumps({"batches": record.batches, "losses": record.losses}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
