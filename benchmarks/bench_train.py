"""Training throughput: steps/s and samples/s with data loading included, and the loader alone.

    python benchmarks/bench_train.py            # mini model and ecapa_tdnn_c512 on CPU
    python benchmarks/bench_train.py --quick    # fewer steps, mini model only

For each model it times (1) full training steps through a Lightning ``Trainer`` with the real
``SpeakerDataModule`` (workers reading and cropping wavs of the mini corpus, fbank +
SpecAugment on the device, AAM loss, optimizer step), and (2) the DataLoader alone over the
same batches. When the loader alone delivers batches several times faster than training
consumes them, it is not the bottleneck. On a GPU it also compares bf16-mixed with fp32.
Uses ``data/mini`` (made if missing, small) unless ``--data`` is given.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule

MODELS = {"mini (ecapa_tdnn_c128)": ("ecapa_tdnn_c128", 64),
          "ecapa_tdnn_c512": ("ecapa_tdnn_c512", 32)}


class _StepTimer(pl.Callback):
    """Wall time of the steps after ``warmup`` (the first ones pay for start-up)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.steps = warmup, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.warmup:
            self.start = time.perf_counter()
        elif batch_idx + 1 > self.warmup:
            self.steps += 1

    def rate(self) -> float:
        return self.steps / (time.perf_counter() - self.start)


def _data(corpus: Path, batch: int, workers: int) -> SpeakerDataModule:
    return SpeakerDataModule(str(corpus / "train"), batch_size=batch, num_workers=workers,
                             crop_seconds=2.0)


def train_rate(corpus: Path, backbone: str, batch: int, steps: int, workers: int,
               accelerator: str, precision: str) -> float:
    """Training steps per second (data loading included)."""
    data = _data(corpus, batch, workers)
    module = SpeakerModule(data.num_classes, backbone=backbone, optimizer="adamw", lr=1e-3,
                           frontend={"type": "kaldi", "num_mel_bins": 80, "dither": 1.0})
    timer = _StepTimer(warmup=2)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, precision=precision,
                         max_steps=steps + 2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer])
    trainer.fit(module, data)
    return timer.rate()


def loader_rate(corpus: Path, batch: int, steps: int, workers: int) -> float:
    """Batches per second the DataLoader alone delivers."""
    data = _data(corpus, batch, workers)
    data.setup("fit")
    it = iter(data.train_dataloader())
    next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mini", help="corpus with a train/ data dir")
    parser.add_argument("--quick", action="store_true", help="4 steps, mini model only")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    corpus = Path(args.data)
    if not (corpus / "train" / "wav.scp").is_file():
        from r2n_audio.data.synthetic import make_corpus

        make_corpus(corpus)
    steps = 4 if args.quick else args.steps
    models = dict(list(MODELS.items())[:1]) if args.quick else MODELS
    configs = [("cpu", "32-true")]
    if torch.cuda.is_available():
        configs = [("gpu", "32-true"), ("gpu", "bf16-mixed")]
    print(f"threads {torch.get_num_threads()}, DataLoader workers {args.workers}, 2 s crops, "
          f"{steps} timed steps")
    print(f"{'model':24} {'device':4} {'precision':10} {'batch':>5} {'steps/s':>8} "
          f"{'samples/s':>9} {'loader batches/s':>16} {'loader / train':>14}")
    for label, (backbone, batch) in models.items():
        loader = loader_rate(corpus, batch, steps, args.workers)
        for accelerator, precision in configs:
            rate = train_rate(corpus, backbone, batch, steps, args.workers, accelerator,
                              precision)
            print(f"{label:24} {accelerator:4} {precision:10} {batch:5d} {rate:8.3f} "
                  f"{rate * batch:9.1f} {loader:16.2f} {loader / rate:13.1f}x", flush=True)


if __name__ == "__main__":
    main()
