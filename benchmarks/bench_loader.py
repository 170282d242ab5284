"""Loader throughput per CPU worker: 2 s training crops with the VoxCeleb recipe's augmentation,
from wav files and from tar shards, in one run; where the time goes; workers per GPU.

    python benchmarks/bench_loader.py                 # ~2 min on an idle core
    python benchmarks/bench_loader.py --seconds 5     # quicker, noisier

One worker = one process reading and augmenting (``num_workers=0``, one thread), so the rates
are per DataLoader worker. The data options (crop, speed perturbation, MUSAN/RIR probability
and scheme) are those of ``recipes/voxceleb/conf/ecapa_c512.yaml``; only the paths point at a
synthetic corpus of VoxCeleb2-like lengths (4-12 s, mean 8 s) with its synthetic MUSAN and RIR
folders (``data/bench_loader``, made once). Variants, each timed for ``--seconds``:

- files: ``TrainCropDataset`` over ``wav.scp`` (+ ``utt2dur``), noise and RIRs read per crop
  from files (the recipe as written);
- files, noise in memory: the same with ``aug_in_memory`` (the file reader at its best);
- shards (flac / wav): ``ShardCropDataset``, noise and RIRs in memory.

Then each stage is timed alone (decoding a crop, speed resampling, RIR FFT convolution, noise
decoding and mixing) and weighted by how often the recipe applies it, and the workers one GPU
needs are worked out from an assumed training rate (no GPU here; ``bench_gpu.py`` measures it).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from r2n_audio.training.datamodule import SpeakerDataModule

RECIPE = Path(__file__).parents[1] / "recipes" / "voxceleb" / "conf" / "ecapa_c512.yaml"
_PATHS = ("train_dir", "val_dir", "val_trials", "musan_dir", "rir_dir", "num_workers")

# Assumed GPU training rates (samples/s of 2 s crops, bf16-mixed, one GPU): the model's
# training FLOPs (3x the forward, counted with torch's FlopCounterMode at 200 frames x 80
# mels) against an A100's 312 TFLOP/s bf16 dense peak at 30 % utilisation, a typical figure
# for small convolutional networks; bench_gpu.py replaces these with measured rates.
A100_BF16_FLOPS, UTILISATION = 312e12, 0.30


def _corpus(root: Path) -> Path:
    if not (root / "train" / "utt2dur").is_file():
        from r2n_audio.data.synthetic import make_corpus

        make_corpus(root, n_train_speakers=50, n_test_speakers=2, utts_per_speaker=4,
                    min_seconds=4.0, max_seconds=12.0, seed=0)
    return root


def _shards(root: Path, fmt: str) -> Path:
    from r2n_audio.data.shards import write_shards

    out = root / f"shards_{fmt}"
    if not (out / "shards.txt").is_file():
        write_shards(root / "train", out, shard_size=50, format=fmt)
    return out / "shards.txt"


def recipe_data(root: Path, **overrides) -> SpeakerDataModule:
    """The recipe's data module with the paths pointing at the benchmark corpus."""
    options = yaml.safe_load(RECIPE.read_text())["data"]
    options = {k: v for k, v in options.items() if k not in _PATHS}
    options.update(musan_dir=str(root / "musan"), rir_dir=str(root / "rirs"), num_workers=0)
    options.update(overrides)
    data = SpeakerDataModule(**options)
    data.setup("fit")
    return data


def crop_stream(dataset):
    """Endless crop counts from ``dataset`` read by one process (file items or shard batches),
    in epochs as training reads it."""
    rng = np.random.default_rng(0)
    if hasattr(dataset, "set_epoch"):
        epoch = 0
        while True:
            dataset.set_epoch(epoch)
            for waves, _, _ in dataset:
                yield waves.shape[0]
            epoch += 1
    while True:
        for i in rng.permutation(len(dataset)):
            dataset[int(i)]
            yield 1


def crops_per_second(stream, seconds: float) -> float:
    """Crops/s drawn from ``stream`` for ``seconds``."""
    count, start = 0, time.perf_counter()
    for n in stream:
        count += n
        if time.perf_counter() - start >= seconds:
            break
    return count / (time.perf_counter() - start)


def _time(fn, repeat: int = 50) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e3


def stages(root: Path, shard_list: Path) -> list[tuple[str, float, float]]:
    """(stage, ms per call, expected calls per crop) for the recipe's 2 s crops."""
    from r2n_audio.audio import load_random_segment
    from r2n_audio.data.manifests import read_wav_scp
    from r2n_audio.data.shard_dataset import _read_crop
    from r2n_audio.data.shards import iter_shard, read_shard_list
    from r2n_audio.features.augment import AddNoise, Reverberate, SpeedPerturb

    n, rng = 35200, np.random.default_rng(0)  # 2.2 s: the crop a 0.9x speed change needs
    path = next(iter(read_wav_scp(root / "train" / "wav.scp").values()))
    data = next(iter_shard(read_shard_list(shard_list).paths[0]))[4]
    wave = torch.randn(32000) * 0.1
    speed = SpeedPerturb(seed=0)
    options = yaml.safe_load(RECIPE.read_text())["data"]
    p_aug, p_speed = options.get("aug_prob", 0.6), 2 / 3 if options.get("speed_perturb") else 0
    noise = {m: AddNoise(root / "musan", seed=0, preload=m) for m in (False, True)}
    reverb = Reverberate(root / "rirs", seed=0, preload=True)
    return [
        ("decode crop: wav file (open, seek, read)", _time(
            lambda: load_random_segment(path, n, 16000, rng)), 1.0),
        (f"decode crop: shard member ({shard_list.parent.name})",
         _time(lambda: _read_crop(data, n, rng)), 1.0),
        ("speed perturbation (sinc resampling)", _time(lambda: speed.apply(wave, 1)), p_speed),
        ("RIR: FFT convolution", _time(lambda: reverb(wave)), p_aug / 2),
        ("noise: read from files + mix", _time(lambda: noise[False](wave)), p_aug / 2),
        ("noise: from memory + mix", _time(lambda: noise[True](wave)), p_aug / 2),
    ]


def training_rate(backbone: str) -> float:
    """Assumed bf16 samples/s of one A100 for ``backbone`` on 2 s crops (see A100_BF16_FLOPS)."""
    from torch.utils.flop_counter import FlopCounterMode

    from r2n_audio.models import create_model

    model = create_model(backbone).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 200, 80))
    return A100_BF16_FLOPS * UTILISATION / (3 * counter.get_total_flops())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/bench_loader", help="benchmark corpus folder")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per variant")
    parser.add_argument("--rounds", type=int, default=4,
                        help="variants alternate this many times; each keeps its best round "
                             "(a shared machine's load then hits them alike)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = _corpus(Path(args.data))
    lists = {fmt: _shards(root, fmt) for fmt in ("flac", "wav")}
    variants = {
        "files (noise/RIR from files, as the recipe)": dict(train_dir=str(root / "train")),
        "files, noise/RIR in memory": dict(train_dir=str(root / "train"), aug_in_memory=True),
        "shards flac, noise/RIR in memory": dict(train_shards=str(lists["flac"]),
                                                 aug_in_memory=True),
        "shards wav, noise/RIR in memory": dict(train_shards=str(lists["wav"]),
                                                aug_in_memory=True),
    }
    print(f"recipe data options: {RECIPE.name}; 1 process, 1 thread; {args.seconds:.0f} s each "
          f"in {args.rounds} rounds")
    streams = {name: crop_stream(recipe_data(root, **overrides).train_dataset)
               for name, overrides in variants.items()}
    for stream in streams.values():
        next(stream)  # imports, kernels and caches before the clock runs
    rates = dict.fromkeys(streams, 0.0)
    for _ in range(args.rounds):
        for name, stream in streams.items():
            rates[name] = max(rates[name], crops_per_second(stream, args.seconds / args.rounds))
    base = rates[next(iter(rates))]
    print(f"\n{'variant':46} {'crops/s/worker':>14} {'vs files':>8}")
    for name, rate in rates.items():
        print(f"{name:46} {rate:14.1f} {rate / base:7.2f}x")
    print(f"\n{'stage (2 s crops)':46} {'ms/call':>8} {'calls/crop':>10} {'ms/crop':>8}")
    for name, ms, calls in stages(root, lists["wav"]):
        print(f"{name:46} {ms:8.3f} {calls:10.2f} {ms * calls:8.3f}")
    best = max(rates.values())
    print(f"\nworkers to feed one GPU (bf16, assumed rate: FLOPs at "
          f"{UTILISATION:.0%} of an A100's {A100_BF16_FLOPS / 1e12:.0f} TFLOP/s)")
    for backbone in ("ecapa_tdnn_c512", "resnet34"):
        need = training_rate(backbone)
        print(f"{backbone:18} {need:8.0f} samples/s -> {math.ceil(need / base):3d} file "
              f"workers, {math.ceil(need / best):3d} shard workers")


if __name__ == "__main__":
    main()
