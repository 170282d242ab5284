"""``r2n-audio embed`` versus SpeechBrain's ``EncoderClassifier`` looping over the same files.

Both embed the same folders with the same ECAPA-TDNN (C=1024, MFA 3072, 20.8M parameters, the
``spkrec-ecapa-voxceleb`` size; random weights, shared by both: SpeechBrain loads them from a
pretrained-style folder, r2n-audio imports that folder), in the same run, on CPU, same threads.
Timed end to end: decode + features + network + writing one ``.npy`` per file.

- r2n-audio: ``r2n-audio embed DIR --model bundle -o OUT`` (in process), fp32 then bf16.
- SpeechBrain at its best, as a user who wants speed would run it: soundfile reads (not its
  ``load_audio``, which goes through its fetching and torchaudio's loader), files sorted by
  length and embedded with ``encode_batch`` in padded batches of ``--sb-batch`` with relative
  lengths, ``np.save`` per file. (Padding changes SpeechBrain's embeddings a little, its issue
  #1374, so the parity figure printed is looser than at batch size 1.)

Both are timed with their start-up (loading the model) included.

Two folders: short files (1-3 s, like VoxCeleb test utterances) and long files (4-8 s).
Targets: >= 1.5x SpeechBrain on short files in fp32, never slower on long ones; bf16 >= 1.3x
fp32 with every embedding's cosine to fp32 >= 0.999; peak memory (RSS) embedding a 1-hour file
< 2 GB (measured in a child process).

Each folder is split into ``--rounds`` parts, and the three ways run on each part in rotating
order, so that load from other processes falls on all of them alike; totals and the per-round
range of the ratios are printed.

Usage: ``python benchmarks/bench_embed.py [--quick] [--threads N] [--short N] [--long N]``
"""

from __future__ import annotations

import argparse
import os
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SB_YAML = """\
n_mels: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: {folder}/embedding_model.ckpt
"""


def make_folder(root: Path, n: int, low: float, high: float, seed: int) -> Path:
    """``n`` wav files of ``low``..``high`` seconds (noisy harmonic tones), 16 kHz PCM16."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        seconds = rng.uniform(low, high)
        t = np.arange(int(seconds * 16000)) / 16000
        f0 = rng.uniform(90, 250)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.1
        x = x + 0.02 * rng.standard_normal(t.shape)
        sf.write(root / f"u{i:04d}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
    return root


def make_models(root: Path) -> tuple[Path, Path]:
    """A SpeechBrain pretrained folder with random weights and our bundle imported from it."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    from r2n_audio.cli import main

    folder = root / "sb_model"
    folder.mkdir()
    torch.manual_seed(0)
    model = ECAPA_TDNN(80, channels=[1024] * 4 + [3072], lin_neurons=192).eval()
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    (folder / "hyperparams.yaml").write_text(SB_YAML.format(folder=folder))
    bundle = root / "bundle.pt"
    if main(["import", "speechbrain", str(folder), "-o", str(bundle)]) != 0:
        raise SystemExit("import failed")
    return folder, bundle


def load_speechbrain(folder: Path, savedir: Path):
    from speechbrain.inference.speaker import EncoderClassifier

    return EncoderClassifier.from_hparams(source=str(folder), savedir=str(savedir))


def run_speechbrain(folder: Path, wav_dir: Path, out: Path, batch_size: int) -> float:
    """Wall seconds of SpeechBrain at its best: start-up, soundfile reads, length-sorted
    ``encode_batch`` batches with relative lengths, ``np.save`` per file."""
    out.mkdir(parents=True)
    start = time.perf_counter()
    classifier = load_speechbrain(folder, out / "savedir")
    paths = sorted(wav_dir.glob("*.wav"), key=lambda p: sf.info(str(p)).frames)
    with torch.inference_mode():
        for first in range(0, len(paths), batch_size):
            group = paths[first:first + batch_size]
            waves = [torch.from_numpy(sf.read(str(p), dtype="float32")[0]) for p in group]
            lengths = torch.tensor([w.numel() for w in waves], dtype=torch.float32)
            batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
            emb = classifier.encode_batch(batch, lengths / lengths.max())[:, 0]
            for path, vector in zip(group, emb.numpy()):
                np.save(out / f"{path.stem}.npy", vector)
    elapsed = time.perf_counter() - start
    shutil.rmtree(out / "savedir")
    return elapsed


def run_ours(bundle: Path, wav_dir: Path, out: Path, precision: str, batch_seconds: float) -> float:
    from r2n_audio.cli import main

    start = time.perf_counter()
    code = main(["embed", str(wav_dir), "--model", str(bundle), "-o", str(out), "--device",
                 "cpu", "--precision", precision, "--batch-seconds", str(batch_seconds),
                 "--no-progress"])
    if code != 0:
        raise SystemExit(f"embed failed with exit code {code}")
    return time.perf_counter() - start


def cosines(a: Path, b: Path) -> np.ndarray:
    """Cosine of each key's embeddings in two npy folders (searched recursively)."""
    from r2n_audio.data.embeddings import load_embeddings

    ea, eb = load_embeddings(a), load_embeddings(b)
    return np.array([ea[k] @ eb[k] / np.linalg.norm(ea[k]) / np.linalg.norm(eb[k]) for k in ea])


def compare(name: str, n: int, seconds: tuple[float, float], root: Path, folder: Path,
            bundle: Path, args: argparse.Namespace) -> None:
    """Time the three ways over ``rounds`` parts of one folder, rotating their order so that
    load from other processes on the machine falls on all of them alike."""
    parts = [make_folder(root / name / f"part{r}", n // args.rounds, *seconds, seed=10 * r + n)
             for r in range(args.rounds)]
    ways = {"speechbrain batch": lambda d, o: run_speechbrain(folder, d, o, args.sb_batch),
            "r2n-audio fp32": lambda d, o: run_ours(bundle, d, o, "fp32", args.batch_seconds),
            "r2n-audio bf16": lambda d, o: run_ours(bundle, d, o, "bf16", args.batch_seconds)}
    names = list(ways)
    times: dict[str, list[float]] = {w: [] for w in names}
    for r, part in enumerate(parts):
        for way in names[r % 3:] + names[: r % 3]:
            times[way].append(ways[way](part, root / f"{name}_{way.split()[-1]}" / part.name))
    files = len(parts) * (n // args.rounds)
    audio = sum(sf.info(str(p)).duration for p in (root / name).rglob("*.wav"))
    print(f"\n{name}: {files} files, {audio:.0f} s of audio, {args.rounds} rounds")
    for way in names:
        total = sum(times[way])
        print(f"  {way:17s} {total:7.2f} s  {files / total:6.2f} files/s  "
              f"{audio / total:7.1f} audio s/s")
    ratio = [s / f for s, f in zip(times[names[0]], times[names[1]])]
    ratio16 = [f / b for f, b in zip(times[names[1]], times[names[2]])]
    parity = np.abs(cosines(root / f"{name}_fp32", root / f"{name}_batch") - 1).max()
    cos16 = cosines(root / f"{name}_fp32", root / f"{name}_bf16").min()
    print(f"  fp32 vs speechbrain: {sum(times[names[0]]) / sum(times[names[1]]):.2f}x (rounds "
          f"{min(ratio):.2f}-{max(ratio):.2f}; 1 - cosine to speechbrain <= {parity:.1e})")
    print(f"  bf16 vs fp32: {sum(times[names[1]]) / sum(times[names[2]]):.2f}x (rounds "
          f"{min(ratio16):.2f}-{max(ratio16):.2f}; min cosine to fp32 {cos16:.5f})")


def peak_memory(bundle: Path, minutes: float, root: Path, threads: int) -> tuple[float, float]:
    """(peak RSS in GB, wall seconds) of a child embedding one file of ``minutes``."""
    wav = root / "long.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(wav, "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(int(minutes)):  # one minute at a time: the writer stays small too
            f.write((0.05 * rng.standard_normal(16000 * 60)).astype(np.float32))
    code = ("import sys, torch; torch.set_num_threads(int(sys.argv[3]));"
            "from r2n_audio.inference.embedder import Embedder;"
            "e = Embedder.from_pretrained(sys.argv[1], device='cpu');"
            "print(e.embed_file(sys.argv[2]).shape)")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(bundle), str(wav), str(threads)], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer files and a 10-minute file for the memory check")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--short", type=int, default=None, help="files in the short folder")
    parser.add_argument("--long", type=int, default=None, help="files in the long folder")
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--sb-batch", type=int, default=16,
                        help="files per SpeechBrain encode_batch call (default 16)")
    parser.add_argument("--memory-minutes", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None,
                        help="parts per folder, timed in rotating order (default 3, quick 2)")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 3)
    n_short = args.short or (24 if args.quick else 120)
    n_long = args.long or (8 if args.quick else 40)
    minutes = args.memory_minutes or (10 if args.quick else 60)
    torch.set_num_threads(args.threads)
    logging.getLogger("speechbrain").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    folder, bundle = make_models(root)
    print(f"ecapa_tdnn_c1024_mfa3072 (20.8M), CPU, {args.threads} threads, torch "
          f"{torch.__version__}; timings include start-up, decode, features, network, "
          f"writing; SpeechBrain batches of {args.sb_batch} files")
    compare("short", n_short, (1.0, 3.0), root, folder, bundle, args)
    compare("long", n_long, (4.0, 8.0), root, folder, bundle, args)
    peak, wall = peak_memory(bundle, minutes, root, args.threads)
    print(f"\none {minutes:.0f}-minute file: peak RSS {peak:.2f} GB, {wall:.0f} s (target < 2 GB)")


if __name__ == "__main__":
    main()
