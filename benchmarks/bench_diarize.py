"""Diarization: DER on the built-in conversations and pyannote's sample, speed, and a peer.

Parts (``--part``, default all):

- ``quality``: the built-in ``make-conversations`` set (seed 0, the demo's: 10 recordings of
  ~60 s with 2-6 held-out speakers), without overlap and with 10 % overlap, diarized by
  ``--model`` (the demo's ``exp/mini/model.pt``) with the defaults (Silero VAD at 0.35, shared
  frames, 1.5 s windows with 3 s context, eigengap spectral clustering with the count refined
  by cluster centroids) and variants; DER by pyannote.metrics, collar 0.25 s each side, overlap
  scored (and, for the overlap set, skipped). The same architecture with random weights is the
  no-training floor. Then the four held-out sets the defaults were chosen on (seeds 1-4, 20
  recordings each, other voices), with the defaults, the eigengap count alone, Silero at the
  recording's own level, and the first defaults (Silero at 0.5, one scale, windows alone, no
  refinement); then pyannote.audio's real two-speaker ``sample.wav`` against its
  ``sample.rttm``.
- ``speed``: one hour of audio (the conversation set repeated) through VAD + embeddings +
  clustering with ``ecapa_tdnn_c512`` (random weights), fp32 and bf16: the defaults (shared
  frames, 3 s context), one scale (``--context 0``), and windows embedded one by one
  (``--frames window``), each in a child
  process (peak RSS); real-time factor = wall seconds / audio seconds, and CPU seconds / audio
  seconds (what the wall time would be on an idle core, with ``--threads 1``). Then spectral
  clustering of 5,000 windows alone.
- ``peer``: the same sliding windows (1.5 s every 0.75 s over a whole recording) embedded by
  pyannote.audio's ``Inference(window="sliding")`` with its ``WeSpeakerResNet34`` (random
  weights, batch 32) and by r2n-audio's :class:`Embedder` with the same weights imported
  (``r2n-audio import pyannote``), each window alone (``embed_batch``) and from shared frames
  (``embed_windows``), one after the other in rotating order; embeddings compared.

- ``frames``: how far shared-frame embeddings (``--frames shared``, sliding and block CMN)
  are from each window embedded alone, as cosines over the windows of pyannote's real
  ``sample.wav`` (oracle speech regions), for pyannote's ``WeSpeakerResNet34`` with random
  weights and BatchNorm statistics (imported) and for ``--model``; then DER of ``--model`` on
  the conversation set without overlap (Silero VAD, eigengap spectral clustering) both ways.

Usage: ``python benchmarks/bench_diarize.py [--part quality|speed|peer|frames] [--model M]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

HOUR = 3600.0


def _conversations(root: Path, overlap: float, seed: int = 0, count: int = 10) -> Path:
    from r2n_audio.data.synthetic.conversations import make_conversations

    folder = root / f"conversations_overlap{int(overlap * 100):02d}" / f"seed{seed}_{count}"
    if not (folder / "conversations.json").is_file():
        make_conversations(folder, n_conversations=count, seconds=60.0, overlap=overlap,
                           seed=seed)
    return folder


def _der(diarizer, folder: Path, collar: float = 0.25, skip_overlap: bool = False,
         **call) -> dict:
    from r2n_audio.diarization.pipeline import score_folder

    return score_folder(diarizer, folder, collar, skip_overlap, **call)["total"]


def _row(name: str, r: dict) -> str:
    return (f"| {name} | {100 * r['der']:.2f} | {100 * r['missed']:.2f} | "
            f"{100 * r['false_alarm']:.2f} | {100 * r['confusion']:.2f} |")


def _random_bundle(name: str, path: Path) -> Path:
    from r2n_audio.features.frontend import Frontend
    from r2n_audio.inference.bundle import make_bundle, save_bundle
    from r2n_audio.models import create_model

    torch.manual_seed(0)
    model = create_model(name)
    save_bundle(make_bundle(name, {}, model.state_dict(), Frontend().config()), path)
    return path


def quality(args, root: Path) -> None:
    from r2n_audio.diarization.pipeline import Diarizer
    from r2n_audio.diarization.rttm import read_rttm
    from r2n_audio.inference.bundle import load_bundle

    def diarizer(model=args.model, **options):
        return Diarizer.from_pretrained(model, device="cpu", **options)

    eigengap = {"split_below": None, "merge_above": None}
    previous = {"vad_threshold": 0.5, "vad_level": None, "context": 0.0, "frames": "window",
                **eigengap}
    plain, overlapped = _conversations(root, 0.0), _conversations(root, 0.1)
    arch = load_bundle(args.model)["model_name"]
    print("| system | DER % | missed % | false alarm % | confusion % |\n|---|---|---|---|---|")
    demo = diarizer()
    print(_row(f"demo `{arch}`, defaults, no overlap", _der(demo, plain)), flush=True)
    for name, options in (("oracle VAD", {"vad": "oracle"}),
                          ("Silero at the recording's own level", {"vad_level": None}),
                          ("eigengap count alone (--split-below off --merge-above off)",
                           eigengap),
                          ("one scale (--context 0)", {"context": 0.0}),
                          ("windows alone (--frames window)", {"frames": "window"}),
                          ("previous defaults (Silero 0.5, one scale, windows alone)", previous),
                          (f"AHC (threshold {args.threshold})",
                           {"clustering": "ahc", "threshold": args.threshold})):
        print(_row(f"demo, {name}, no overlap", _der(diarizer(**options), plain)), flush=True)
    print(_row("demo, 10 % overlap, overlap scored", _der(demo, overlapped)))
    print(_row("demo, 10 % overlap, overlap not scored",
               _der(demo, overlapped, skip_overlap=True)), flush=True)
    floor = diarizer(_random_bundle(arch, root / "random.pt"))
    print(_row(f"`{arch}` random weights (no training), no overlap", _der(floor, plain)))
    for seed in (1, 2, 3, 4):  # the held-out sets the defaults were chosen on
        dev = _conversations(root, 0.0, seed=seed, count=20)
        print(_row(f"held-out set seed {seed} (20 recordings), demo, defaults", _der(demo, dev)))
        print(_row(f"held-out set seed {seed}, demo, eigengap count alone",
                   _der(diarizer(**eigengap), dev)))
        print(_row(f"held-out set seed {seed}, demo, Silero at the recording's own level",
                   _der(diarizer(vad_level=None), dev)))
        print(_row(f"held-out set seed {seed}, demo, previous defaults",
                   _der(diarizer(**previous), dev)), flush=True)
    # pyannote.audio's real recording (two speakers, 30 s)
    import importlib.util

    from r2n_audio.diarization.der import DERScorer

    sample = Path(next(iter(importlib.util.find_spec("pyannote.audio")
                            .submodule_search_locations))) / "sample"
    ref = read_rttm(sample / "sample.rttm")["sample"]
    for name, call in (("eigengap", {}), ("--num-speakers 2", {"num_speakers": 2})):
        scorer = DERScorer()
        result = demo(sample / "sample.wav", **call)
        scorer.add("sample", ref, result, result.duration)
        print(_row(f"pyannote sample.wav, demo, {name} ({len(result.speakers)} found)",
                   scorer.total()))


_SPEED_CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
from r2n_audio.diarization.pipeline import Diarizer
import numpy as np, soundfile as sf
wave = np.concatenate([sf.read(p, dtype="float32")[0] for p in sys.argv[3].split(",")])
reps = int(np.ceil(3600 * 16000 / len(wave)))
wave = np.tile(wave, reps)[: 3600 * 16000]
d = Diarizer.from_pretrained(sys.argv[1], device="cpu", precision=sys.argv[2],
                             frames=sys.argv[5], context=float(sys.argv[6]))
d(wave[: 16000 * 20])  # warm-up
t, cpu = time.perf_counter(), time.process_time()
r = d(wave)
wall, cpu = time.perf_counter() - t, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "timings": r.timings, "windows": r.n_windows,
                  "speakers": len(r.speakers), "audio": len(wave) / 16000,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def speed(args, root: Path) -> None:
    from r2n_audio.diarization.clustering import cluster_embeddings

    folder = _conversations(root, 0.0)
    bundle = _random_bundle("ecapa_tdnn_c512", root / "c512.pt")
    files = ",".join(str(p) for p in sorted((folder / "wav").glob("*.wav")))
    print(f"1 h of audio (the 10-conversation set repeated), ecapa_tdnn_c512 random weights, "
          f"{args.threads} threads; load average before: {os.getloadavg()[0]:.1f}")
    print("| precision | frames | context s | windows | VAD s | embed s | cluster s | total s "
          "| RTF | CPU s / audio s | peak RSS GB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    runs = [(p, "shared", c) for p in ("fp32", "bf16") for c in (3.0, 0.0)]
    runs += [(p, "window", 3.0) for p in ("fp32", "bf16")]  # the defaults, windows alone
    for precision, frames, context in runs:
        out = subprocess.run([sys.executable, "-c", _SPEED_CHILD, str(bundle), precision, files,
                              str(args.threads), frames, str(context)], capture_output=True,
                             text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        t = r["timings"]
        print(f"| {precision} | {frames} | {context:g} | {r['windows']} | {t['vad']:.1f} | "
              f"{t['embed']:.1f} | "
              f"{t['cluster']:.2f} | {r['wall']:.1f} | {r['wall'] / r['audio']:.4f} | "
              f"{r['cpu'] / r['audio']:.4f} | {r['peak_rss_gb']:.2f} |", flush=True)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 192))
    emb = centres[rng.integers(8, size=5000)] + 1.2 * rng.standard_normal((5000, 192))
    for method in ("spectral", "ahc"):
        cluster_embeddings(emb[:100], method, threshold=0.7)  # scipy and sklearn imported here
        t, cpu = time.perf_counter(), time.process_time()
        labels = cluster_embeddings(emb, method, threshold=0.7)
        print(f"clustering 5,000 windows ({method}): {time.perf_counter() - t:.2f} s wall, "
              f"{time.process_time() - cpu:.2f} s CPU, {len(np.unique(labels))} clusters "
              f"(8 made)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def peer(args, root: Path) -> None:
    import soundfile as sf
    from pyannote.audio import Inference

    from r2n_audio.diarization.segments import sliding_windows
    from r2n_audio.inference.embedder import Embedder
    from r2n_audio.inference.importers import import_model

    folder = root / "pyannote_resnet34"
    model = _random_pyannote_resnet34(folder)
    bundle = import_model("pyannote", folder)
    inference = Inference(model, window="sliding", duration=1.5, step=0.75, batch_size=32,
                          device=torch.device("cpu"))
    wav = sorted((_conversations(root, 0.0) / "wav").glob("*.wav"))[args.peer_file]
    n = sf.info(wav).duration
    windows = sliding_windows([(0.0, n)], 1.5, 0.75)[:-1]  # pyannote's grid (no end-aligned one)
    bounds = np.round(windows * 16000).astype(int)
    print(f"{wav.name}: {n:.0f} s, {len(bounds)} windows of 1.5 s every 0.75 s, "
          f"WeSpeakerResNet34 random weights, {args.threads} threads, best of {args.rounds}, "
          f"decoding counted for all; pyannote in fp32 only (under bf16 autocast its Inference "
          f"fails converting the outputs to numpy)")
    print("| system | seconds | pyannote s / system s | cosine to pyannote min | median |\n"
          "|---|---|---|---|---|")

    def theirs():
        wave = torch.from_numpy(sf.read(wav, dtype="float32")[0])[None]
        return inference({"waveform": wave, "sample_rate": 16000}).data

    contenders = {"pyannote Inference(sliding, batch 32)": theirs}
    for precision in ("fp32", "bf16"):
        embedder = Embedder.from_pretrained(bundle, device="cpu", precision=precision)
        contenders[f"r2n {precision}, each window alone"] = partial(_alone, embedder, wav, bounds)
        contenders[f"r2n {precision}, shared frames"] = partial(_shared, embedder, wav, windows)
    best, out = _race(contenders, args.rounds)
    names = list(best)
    for name in names:
        a, b = out[names[0]], out[name]
        m = min(len(a), len(b))
        cos = (a[:m] * b[:m]).sum(1) / np.linalg.norm(a[:m], axis=1) / np.linalg.norm(b[:m], axis=1)
        print(f"| {name} | {best[name]:.2f} | {best[names[0]] / best[name]:.2f} | "
              f"{cos.min():.4f} | {np.median(cos):.4f} |", flush=True)


def _random_pyannote_resnet34(folder: Path, randomize=None):
    """pyannote.audio's ``WeSpeakerResNet34`` (seed 0; ``randomize(model.resnet)`` if given),
    saved in ``folder`` as pyannote's ``pytorch_model.bin`` for ``r2n-audio import pyannote``."""
    import lightning
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding.wespeaker import WeSpeakerResNet34

    torch.manual_seed(0)
    model = WeSpeakerResNet34()
    if randomize is not None:
        randomize(model.resnet)
    model.specifications = Specifications(problem=Problem.REPRESENTATION,
                                          resolution=Resolution.CHUNK, duration=1.5)
    model.eval()
    folder.mkdir(exist_ok=True)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    torch.save(checkpoint, folder / "pytorch_model.bin")
    return model


def _alone(embedder, wav: Path, bounds: np.ndarray) -> np.ndarray:
    import soundfile as sf

    wave = sf.read(wav, dtype="float32")[0]
    return embedder.embed_batch(torch.from_numpy(np.stack([wave[a:b] for a, b in bounds])))


def _shared(embedder, wav: Path, windows: np.ndarray) -> np.ndarray:
    import soundfile as sf

    return embedder.embed_windows(sf.read(wav, dtype="float32")[0], windows)


def _race(contenders: dict, rounds: int) -> tuple[dict, dict]:
    """Best wall seconds and last output of each contender (a callable), in rotating order."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    out = {}
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            t = time.perf_counter()
            out[name] = contenders[name]()
            times[name].append(time.perf_counter() - t)
    return {name: min(v) for name, v in times.items()}, out


def frames(args, root: Path) -> None:
    import importlib.util

    import soundfile as sf

    from r2n_audio.diarization.pipeline import Diarizer
    from r2n_audio.diarization.rttm import read_rttm
    from r2n_audio.diarization.segments import sliding_windows
    from r2n_audio.diarization.vad import regions_from_turns
    from r2n_audio.inference.embedder import Embedder
    from r2n_audio.inference.importers import import_model
    from r2n_audio.inference.importers.upstream import randomize_all

    sample = Path(next(iter(importlib.util.find_spec("pyannote.audio")
                            .submodule_search_locations))) / "sample"
    wave = sf.read(sample / "sample.wav", dtype="float32")[0]
    regions = regions_from_turns(read_rttm(sample / "sample.rttm")["sample"])
    windows = sliding_windows(regions, 1.5, 0.75, duration=len(wave) / 16000)
    bounds = np.round(windows * 16000).astype(int)
    resnet = root / "pyannote_resnet34_bn"
    _random_pyannote_resnet34(resnet, randomize_all)
    print(f"pyannote sample.wav, {len(windows)} windows (1.5 s every 0.75 s over the reference "
          f"speech regions): cosine of shared-frame to per-window embeddings")
    print("| model | CMN | min | 5th percentile | median |\n|---|---|---|---|---|")
    for name, bundle in (("WeSpeakerResNet34, random weights and BN statistics",
                          import_model("pyannote", resnet)), (f"`{args.model}`", args.model)):
        embedder = Embedder.from_pretrained(bundle, device="cpu")
        alone = embedder.embed_batch(torch.from_numpy(_cut(wave, bounds)),
                                     torch.from_numpy(bounds[:, 1] - bounds[:, 0]))
        for cmn in ("sliding", "block"):
            shared = embedder.embed_windows(wave, windows, cmn=cmn)
            cos = (alone * shared).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(
                shared, axis=1)
            print(f"| {name} | {cmn} | {cos.min():.4f} | {np.percentile(cos, 5):.4f} | "
                  f"{np.median(cos):.4f} |", flush=True)
    plain = _conversations(root, 0.0)
    print(f"\nDER of `{args.model}` on the conversation set (no overlap, Silero VAD, spectral):")
    print("| frames | DER % | missed % | false alarm % | confusion % |\n|---|---|---|---|---|")
    for mode in ("window", "shared"):
        print(_row(mode, _der(Diarizer.from_pretrained(args.model, device="cpu", frames=mode),
                              plain)), flush=True)


def _cut(wave: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Windows ``bounds (W, 2)`` of ``wave`` stacked, zero-padded to the longest: (W, N)."""
    out = np.zeros((len(bounds), int((bounds[:, 1] - bounds[:, 0]).max())), dtype=np.float32)
    for row, (a, b) in enumerate(bounds):
        out[row, : b - a] = wave[a:b]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("quality", "speed", "peer", "frames", "all"),
                        default="all")
    parser.add_argument("--model", default="exp/mini/model.pt", help="the demo bundle")
    parser.add_argument("--threshold", type=float, default=0.7, help="AHC threshold")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-file", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the sets (default: a temp dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.work or tempfile.mkdtemp(prefix="bench_diarize_"))
    root.mkdir(parents=True, exist_ok=True)
    for part in (("quality", "speed", "peer", "frames") if args.part == "all" else (args.part,)):
        print(f"\n## {part}\n", flush=True)
        globals()[part](args, root)


if __name__ == "__main__":
    main()
