"""The GPU check in one command: training and embedding throughput, bottleneck, peak memory.

    make bench-gpu                       # = python benchmarks/bench_gpu.py; < 5 min on one GPU
    python benchmarks/bench_gpu.py --cpu # the CPU fallback: tiny models and sizes, seconds

On CUDA, for ``ecapa_tdnn_c512`` and ``resnet34`` in fp32 and bf16-mixed, it times training
steps (fbank on the GPU, AAM loss, SGD) three ways on 2 s crops, batch 128:

- train: with the real loader (``SpeakerDataModule`` reading tar shards with the recipe's
  speed perturbation and MUSAN/RIR augmentation, noise in memory, ``--workers`` processes);
- model: the same steps on a batch already on the GPU (what the GPU alone sustains);
- loader: the DataLoader alone (what the workers deliver).

The loader is the bottleneck when it delivers less than the model consumes. Then it embeds the
corpus (``Embedder``, bf16 and fp32) and reports audio-hours per hour, and the peak GPU memory
of each run. The data is a synthetic corpus (``make-corpus``, 4-8 s utterances) written once
to ``--data`` with its shards; models have random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

CUDA_MODELS = ("ecapa_tdnn_c512", "resnet34")
CPU_MODELS = ("ecapa_tdnn_tiny", "resnet34_tiny")


def prepare(data: Path, cpu: bool) -> tuple[Path, Path]:
    """(corpus, shard list), made once. On CUDA the shards list every training file 10 times
    under new keys: 8,000 utterances (62 batches an epoch, so worker start-up at each epoch
    does not pass for loader speed) from 800 synthesised files."""
    from r2n_audio.data.manifests import read_utt2dur, read_utt2spk, read_wav_scp
    from r2n_audio.data.manifests import write_utt2dur, write_utt2spk, write_wav_scp
    from r2n_audio.data.shards import write_shards
    from r2n_audio.data.synthetic import make_corpus

    if not (data / "train" / "utt2dur").is_file():
        size = dict(n_train_speakers=8, utts_per_speaker=4, min_seconds=1.0, max_seconds=2.0) \
            if cpu else dict(n_train_speakers=100, utts_per_speaker=8, min_seconds=4.0,
                             max_seconds=8.0)
        make_corpus(data, n_test_speakers=2, seed=0, **size)
    repeats, big = (1, data / "train") if cpu else (10, data / "train_x10")
    if not (big / "utt2dur").is_file():
        tables = [read(data / "train" / name) for read, name in (
            (read_wav_scp, "wav.scp"), (read_utt2spk, "utt2spk"), (read_utt2dur, "utt2dur"))]
        for write, table, name in zip((write_wav_scp, write_utt2spk, write_utt2dur), tables,
                                      ("wav.scp", "utt2spk", "utt2dur")):
            write(big / name, {f"{k}-r{r}": v for k, v in table.items() for r in range(repeats)})
    shards = data / "shards"
    if not (shards / "shards.txt").is_file():
        write_shards(big, shards, shard_size=200, jobs=os.cpu_count() or 1)
    return data, shards / "shards.txt"


def _loader(corpus: Path, shard_list: Path, batch: int, workers: int):
    from r2n_audio.training.datamodule import SpeakerDataModule

    data = SpeakerDataModule(train_shards=str(shard_list), batch_size=batch,
                             num_workers=workers, speed_perturb=True,
                             musan_dir=str(corpus / "musan"), rir_dir=str(corpus / "rirs"),
                             aug_in_memory=True, crop_seconds=2.0)
    data.setup("fit")
    return data


def _batches(loader):
    """Batches forever, epoch after epoch."""
    while True:
        yield from loader


def _rate(step, steps: int, warmup: int, sync) -> float:
    """Calls of ``step`` per second after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - start)


def train_rates(backbone: str, bf16: bool, data, device: torch.device, steps: int,
                warmup: int) -> dict[str, float]:
    """Steps/s with the loader, with a resident batch, and of the loader alone; peak GB."""
    from r2n_audio.training.module import SpeakerModule

    module = SpeakerModule(data.num_classes, backbone=backbone,
                           frontend={"type": "kaldi", "num_mel_bins": 80, "dither": 1.0,
                                     "cmn": True}).to(device).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(waves, labels):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            cosines = module.head(module(waves))
        loss = module.loss_fn(cosines.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    batches = _batches(data.train_dataloader())

    def real():
        waves, labels = next(batches)[:2]
        step(waves.to(device, non_blocking=True), labels.to(device, non_blocking=True))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = {"train": _rate(real, steps, warmup, sync)}
    waves, labels = next(batches)[:2]
    waves, labels = waves.to(device), labels.to(device)
    result["model"] = _rate(lambda: step(waves, labels), steps, warmup, sync)
    result["loader"] = _rate(lambda: next(batches), steps, warmup, lambda: None)
    result["peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30 \
        if device.type == "cuda" else float("nan")
    return result


def embed_rate(backbone: str, corpus: Path, device: torch.device, precision: str) -> float:
    """Audio-hours embedded per hour of wall time over the corpus's training files."""
    from r2n_audio.data.manifests import read_utt2dur, read_wav_scp
    from r2n_audio.features.frontend import Frontend
    from r2n_audio.inference.embedder import Embedder
    from r2n_audio.models import create_model

    embedder = Embedder(create_model(backbone), Frontend(), device=device, precision=precision)
    paths = list(read_wav_scp(corpus / "train" / "wav.scp").values())
    hours = sum(read_utt2dur(corpus / "train" / "utt2dur").values()) / 3600
    embedder.embed_files(paths[:8], workers=4)  # kernels, caches
    start = time.perf_counter()
    embedder.embed_files(paths, workers=4)
    return hours / ((time.perf_counter() - start) / 3600)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the CPU fallback (also without CUDA)")
    parser.add_argument("--data", default=None, help="corpus folder (made if missing)")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers (default: CPUs - 2, at most 16)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    args = parser.parse_args(argv)
    cpu = args.cpu or not torch.cuda.is_available()
    device = torch.device("cpu" if cpu else "cuda")
    if cpu:
        torch.set_num_threads(1)
    corpus, shard_list = prepare(Path(args.data or ("data/bench_gpu_cpu" if cpu else
                                                    "data/bench_gpu")), cpu)
    workers = args.workers if args.workers is not None else \
        (0 if cpu else min(16, max(1, (os.cpu_count() or 2) - 2)))
    steps, warmup, batch = (args.steps or 2, 1, 8) if cpu else (args.steps or 20, 3, 128)
    models = CPU_MODELS if cpu else CUDA_MODELS
    precisions = ("fp32",) if cpu else ("fp32", "bf16")
    name = "CPU fallback" if cpu else torch.cuda.get_device_name(0)
    print(f"{name}: batch {batch} x 2 s crops, {workers} loader workers, {steps} timed steps")
    print(f"{'model':16} {'prec':5} {'steps/s':>8} {'samples/s':>10} {'model alone':>12} "
          f"{'loader alone':>13} {'bottleneck':>10} {'peak GB':>8}")
    data = _loader(corpus, shard_list, batch, workers)
    for backbone in models:
        for precision in precisions:
            r = train_rates(backbone, precision == "bf16", data, device, steps, warmup)
            neck = "loader" if r["loader"] < r["model"] else "model"
            print(f"{backbone:16} {precision:5} {r['train']:8.2f} {r['train'] * batch:10.1f} "
                  f"{r['model'] * batch:12.1f} {r['loader'] * batch:13.1f} {neck:>10} "
                  f"{r['peak_gb']:8.2f}", flush=True)
    for backbone in models:
        for precision in precisions:
            rate = embed_rate(backbone, corpus, device, precision)
            print(f"embed {backbone} {precision}: {rate:,.0f} audio-hours per hour", flush=True)


if __name__ == "__main__":
    main()
