"""Batched Fbank versus a loop of torchaudio's Kaldi fbank and versus kaldi-native-fbank.

64 utterances of 3 s at 16 kHz, 80 bins, hamming window (the speaker-verification setting), all
three in the same run on the same threads; prints seconds per batch (median of repeats) and the
speed-up of the batched module over each (wall clock and process CPU time: on a shared machine
the CPU time is the steadier figure). Target: >= 3x the torchaudio loop on CPU.

Usage: ``python benchmarks/bench_fbank.py [--threads N] [--repeats R] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchaudio.compliance.kaldi as kaldi

from r2n_audio.features.fbank import Fbank

OPTIONS = dict(num_mel_bins=80, frame_length=25.0, frame_shift=10.0, dither=0.0,
               window_type="hamming", energy_floor=0.0, sample_frequency=16000.0)


def _measure(runs: dict[str, Callable[[], object]], repeats: int,
             sync: Callable[[], None]) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per run; the contenders alternate within each repeat, so a
    change in machine load hits all of them alike."""
    for fn in runs.values():  # warm-up: allocations, FFT plans
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
            for name, ts in times.items()}


def _kaldi_native(waves: torch.Tensor) -> Callable[[], list]:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0.0
    rows = [w.tolist() for w in waves]  # conversion outside the timed part

    def run() -> list:
        out = []
        for row in rows:
            fb = knf.OnlineFbank(opts)
            fb.accept_waveform(16000, row)
            fb.input_finished()
            out.append([fb.get_frame(i) for i in range(fb.num_frames_ready)])
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    waves = 0.1 * torch.randn(args.batch, int(args.seconds * 16000),
                              generator=torch.Generator().manual_seed(0))
    fbank = Fbank(**OPTIONS)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    on_device, module = waves.to(device), fbank.to(device)

    runs = {"r2n_audio Fbank (batched)": lambda: module(on_device),
            "torchaudio kaldi.fbank loop": lambda: [kaldi.fbank(w[None], **OPTIONS)
                                                    for w in waves]}
    try:
        runs["kaldi-native-fbank loop"] = _kaldi_native(waves)
    except ImportError:
        print("kaldi-native-fbank is not installed: pip install kaldi-native-fbank")
    with torch.inference_mode():
        results = _measure(runs, args.repeats, sync)
    print(f"{args.batch} x {args.seconds:g} s at 16 kHz, 80 bins, {args.threads} thread(s); "
          f"batched on {device.type}, loops on cpu; median of {args.repeats}")
    ours_wall, ours_cpu = results["r2n_audio Fbank (batched)"]
    for name, (wall, cpu) in results.items():
        ratio = "" if wall is ours_wall else (f"   speed-up {wall / ours_wall:4.2f}x wall, "
                                               f"{cpu / ours_cpu:4.2f}x cpu")
        print(f"  {name:28s} {wall * 1e3:7.1f} ms wall {cpu * 1e3:7.1f} ms cpu{ratio}")


if __name__ == "__main__":
    main()
