"""Diarization: DER on the built-in conversations and pyannote's sample, speed, and a peer.

Parts (``--part``, default all):

- ``quality``: ``make-conversations`` sets of 10 recordings of ~60 s with 2-6 held-out speakers,
  without overlap and with 10 % overlap, diarized by ``--model`` (the demo's
  ``exp/mini/model.pt``) with Silero VAD and eigengap spectral clustering; DER by
  pyannote.metrics, collar 0.25 s each side, overlap scored (and, for the overlap set, skipped).
  The same architecture with random weights is the no-training floor. Then pyannote.audio's
  real two-speaker ``sample.wav`` against its ``sample.rttm``.
- ``speed``: one hour of audio (the conversation set repeated) through VAD + embeddings +
  clustering with ``ecapa_tdnn_c512`` (random weights), fp32 and bf16, windows embedded one by
  one (``--frames window``) and from shared frames (``--frames shared``), each in a child
  process (peak RSS); real-time factor = wall seconds / audio seconds, and CPU seconds / audio
  seconds (what the wall time would be on an idle core, with ``--threads 1``). Then spectral
  clustering of 5,000 windows alone.
- ``peer``: the same sliding windows (1.5 s every 0.75 s over a whole recording) embedded by
  pyannote.audio's ``Inference(window="sliding")`` with its ``WeSpeakerResNet34`` (random
  weights, batch 32) and by r2n-audio's :class:`Embedder` with the same weights imported
  (``r2n-audio import pyannote``), each window alone (``embed_batch``) and from shared frames
  (``embed_windows``), one after the other in rotating order; embeddings compared.

Usage: ``python benchmarks/bench_diarize.py [--part quality|speed|peer] [--model M]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HOUR = 3600.0


def _conversations(root: Path, overlap: float) -> Path:
    from r2n_audio.data.synthetic.conversations import make_conversations

    folder = root / f"conversations_overlap{int(overlap * 100):02d}"
    if not (folder / "conversations.json").is_file():
        make_conversations(folder, n_conversations=10, seconds=60.0, overlap=overlap)
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

    plain, overlapped = _conversations(root, 0.0), _conversations(root, 0.1)
    arch = load_bundle(args.model)["model_name"]
    print("| system | DER % | missed % | false alarm % | confusion % |\n|---|---|---|---|---|")
    demo = Diarizer.from_pretrained(args.model, device="cpu")
    print(_row(f"demo `{arch}`, no overlap", _der(demo, plain)), flush=True)
    print(_row(f"demo `{arch}`, oracle VAD, no overlap",
               _der(Diarizer.from_pretrained(args.model, device="cpu", vad="oracle"), plain)))
    print(_row(f"demo, AHC (threshold {args.threshold}), no overlap", _der(Diarizer.from_pretrained(
        args.model, device="cpu", clustering="ahc", threshold=args.threshold), plain)))
    print(_row("demo, 10 % overlap, overlap scored", _der(demo, overlapped)))
    print(_row("demo, 10 % overlap, overlap not scored",
               _der(demo, overlapped, skip_overlap=True)), flush=True)
    floor = Diarizer.from_pretrained(_random_bundle(arch, root / "random.pt"), device="cpu")
    print(_row(f"`{arch}` random weights (no training), no overlap", _der(floor, plain)))
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
                             frames=sys.argv[5])
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
    print("| precision | frames | windows | VAD s | embed s | cluster s | total s | RTF "
          "| CPU s / audio s | peak RSS GB |\n|---|---|---|---|---|---|---|---|---|---|")
    for precision, frames in [(p, f) for p in ("fp32", "bf16") for f in ("window", "shared")]:
        out = subprocess.run([sys.executable, "-c", _SPEED_CHILD, str(bundle), precision, files,
                              str(args.threads), frames], capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        t = r["timings"]
        print(f"| {precision} | {frames} | {r['windows']} | {t['vad']:.1f} | {t['embed']:.1f} | "
              f"{t['cluster']:.2f} | {r['wall']:.1f} | {r['wall'] / r['audio']:.4f} | "
              f"{r['cpu'] / r['audio']:.4f} | {r['peak_rss_gb']:.2f} |", flush=True)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 192))
    emb = centres[rng.integers(8, size=5000)] + 1.2 * rng.standard_normal((5000, 192))
    for method in ("spectral", "ahc"):
        t, cpu = time.perf_counter(), time.process_time()
        labels = cluster_embeddings(emb, method, threshold=0.7)
        print(f"clustering 5,000 windows ({method}): {time.perf_counter() - t:.2f} s wall, "
              f"{time.process_time() - cpu:.2f} s CPU, {len(np.unique(labels))} clusters "
              f"(8 made)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def peer(args, root: Path) -> None:
    import soundfile as sf
    from pyannote.audio import Inference
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding.wespeaker import WeSpeakerResNet34

    from r2n_audio.diarization.segments import sliding_windows
    from r2n_audio.inference.embedder import Embedder
    from r2n_audio.inference.importers import import_model

    torch.manual_seed(0)
    model = WeSpeakerResNet34()
    model.specifications = Specifications(problem=Problem.REPRESENTATION,
                                          resolution=Resolution.CHUNK, duration=1.5)
    model.eval()
    folder = root / "pyannote_resnet34"
    folder.mkdir(exist_ok=True)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    import lightning

    checkpoint["pytorch-lightning_version"] = lightning.__version__
    torch.save(checkpoint, folder / "pytorch_model.bin")
    embedder = Embedder.from_pretrained(import_model("pyannote", folder), device="cpu")
    inference = Inference(model, window="sliding", duration=1.5, step=0.75, batch_size=32,
                          device=torch.device("cpu"))
    wav = sorted((_conversations(root, 0.0) / "wav").glob("*.wav"))[args.peer_file]
    wave, _ = sf.read(wav, dtype="float32")
    n = len(wave) / 16000
    windows = sliding_windows([(0.0, n)], 1.5, 0.75)[:-1]  # pyannote's grid (no end-aligned one)
    bounds = np.round(windows * 16000).astype(int)
    names = ["pyannote", "r2n window", "r2n shared"]
    times: dict[str, list[float]] = {name: [] for name in names}
    out = {}
    for round_ in range(args.rounds):
        for name in names[round_ % 3:] + names[:round_ % 3]:  # rotating order
            t = time.perf_counter()
            wave_now, _ = sf.read(wav, dtype="float32")  # decoding counted for all
            if name == "pyannote":  # in memory: pyannote's torchcodec decoder is not needed
                out[name] = inference({"waveform": torch.from_numpy(wave_now)[None],
                                       "sample_rate": 16000}).data
            elif name == "r2n window":
                out[name] = embedder.embed_batch(torch.from_numpy(
                    np.stack([wave_now[a:b] for a, b in bounds])))
            else:
                out[name] = embedder.embed_windows(wave_now, windows)
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(f"{wav.name}: {n:.0f} s, {len(bounds)} windows of 1.5 s every 0.75 s, "
          f"WeSpeakerResNet34 random weights, {args.threads} threads, best of {args.rounds}")
    print(f"pyannote Inference(sliding, batch 32): {best['pyannote']:.2f} s")
    theirs = out["pyannote"]
    for name in names[1:]:
        m = min(len(theirs), len(out[name]))
        a, b = theirs[:m], out[name][:m]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        print(f"{name}: {best[name]:.2f} s; ratio {best['pyannote'] / best[name]:.2f}x; "
              f"cosine to pyannote's windows min {cos.min():.4f} median {np.median(cos):.4f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("quality", "speed", "peer", "all"), default="all")
    parser.add_argument("--model", default="exp/mini/model.pt", help="the demo bundle")
    parser.add_argument("--threshold", type=float, default=0.5, help="AHC threshold")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-file", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the sets (default: a temp dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.work or tempfile.mkdtemp(prefix="bench_diarize_"))
    root.mkdir(parents=True, exist_ok=True)
    for part in (("quality", "speed", "peer") if args.part == "all" else (args.part,)):
        print(f"\n## {part}\n", flush=True)
        globals()[part](args, root)


if __name__ == "__main__":
    main()
