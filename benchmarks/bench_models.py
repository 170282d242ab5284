"""Benchmark the speaker backbones: parameters, MACs per 2 s of audio, CPU throughput.

For every registered speaker model (or those matching ``--models``): parameter count,
multiply-accumulates for 2 s of audio (200 frames of 80 fbank bins;
``torch.utils.flop_counter.FlopCounterMode`` total / 2), and eval-mode forward throughput on
CPU for a batch of 16 x 3 s (300 frames) in audio seconds per wall second (best of
``--repeats``). SpeechBrain 1.1.2's ``ECAPA_TDNN`` runs at the same sizes in the same process,
and the machine's fp32 matmul GFLOP/s (best of a 2048^3 GEMM) is the ceiling each model's
achieved GFLOP/s is stated against.

Usage::

    python benchmarks/bench_models.py --quick          # a few models, ~1 minute
    python benchmarks/bench_models.py --threads 1      # every speaker model
    python benchmarks/bench_models.py --models 'ecapa*' --json exp/bench_models.json
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from r2n_audio.atomic import atomic_write_text
from r2n_audio.models import create_model, list_models

QUICK = ["ecapa_tdnn_tiny", "ecapa_tdnn_c128", "ecapa_tdnn_c512", "resnet34", "res2net34_w32_s4"]
SPEECHBRAIN_SIZES = {
    "ecapa_tdnn_c512": [512] * 4 + [1536],
    "ecapa_tdnn_c1024": [1024] * 4 + [1536],
    "ecapa_tdnn_c1024_mfa3072": [1024] * 4 + [3072],
}
FRAMES_PER_SECOND = 100  # 10 ms hop


class _SpeechBrainAdapter(torch.nn.Module):
    """SpeechBrain's ECAPA_TDNN behind our ``forward(feats, lengths)`` call (B, 1, D) -> (B, D)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

        self.model = ECAPA_TDNN(80, channels=channels, lin_neurons=192)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(feats).squeeze(1)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GEMM rate in GFLOP/s (2 n^3 flops per product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def macs(model: torch.nn.Module, seconds: float = 2.0) -> int:
    """Multiply-accumulates of one forward on ``seconds`` of audio (batch 1)."""
    feats = torch.randn(1, int(seconds * FRAMES_PER_SECOND), 80)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(feats)
    return counter.get_total_flops() // 2


def throughputs(models: list[torch.nn.Module], batch: int, seconds: float, repeats: int) -> list[float]:
    """Audio seconds per second of each model: best of ``repeats`` after a warm-up, with the
    models' runs interleaved so that load from other processes hits them alike."""
    feats = torch.randn(batch, int(seconds * FRAMES_PER_SECOND), 80)
    best = [float("inf")] * len(models)
    with torch.no_grad():
        for model in models:
            model(feats)
        for _ in range(repeats):
            for i, model in enumerate(models):
                start = time.perf_counter()
                model(feats)
                best[i] = min(best[i], time.perf_counter() - start)
    return [batch * seconds / t for t in best]


def bench_group(named: list[tuple[str, torch.nn.Module]], args: argparse.Namespace) -> list[dict]:
    """Rows for models timed together (ours and SpeechBrain's at one size)."""
    for _, model in named:
        model.eval()
    rates = throughputs([m for _, m in named], args.batch, args.seconds, args.repeats)
    rows = []
    for (name, model), rate in zip(named, rates):
        mac_2s = macs(model)
        # MACs per audio second x audio seconds per second x 2 flops per MAC
        rows.append(dict(model=name, params=sum(p.numel() for p in model.parameters()),
                         gmacs_2s=mac_2s / 1e9, audio_s_per_s=rate, gflops=2 * mac_2s / 2.0 * rate / 1e9))
    return rows


def _speaker_models(pattern: str | None, quick: bool) -> list[str]:
    names = QUICK if quick else list_models()
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def _table(rows: list[dict], ceiling: float, args: argparse.Namespace) -> str:
    head = (f"CPU {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{args.threads} thread(s), batch {args.batch} x {args.seconds:g} s, best of {args.repeats}; "
            f"fp32 matmul ceiling {ceiling:.1f} GFLOP/s (best 2048^3 GEMM, before and after)\n\n"
            "| model | params | GMACs / 2 s | audio s / s | GFLOP/s | of ceiling |\n"
            "|---|---:|---:|---:|---:|---:|\n")
    lines = [f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['gmacs_2s']:.2f} | {r['audio_s_per_s']:.1f} | "
             f"{r['gflops']:.1f} | {100 * r['gflops'] / ceiling:.0f}% |" for r in rows]
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--models", help="fnmatch pattern over registered names")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-speechbrain", action="store_true", help="skip the SpeechBrain reference")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ceiling = matmul_gflops()
    rows = []
    for name in _speaker_models(args.models, args.quick):
        group = [(name, create_model(name))]
        if name in SPEECHBRAIN_SIZES and not args.no_speechbrain:
            group.append((f"speechbrain ECAPA_TDNN ({name})", _SpeechBrainAdapter(SPEECHBRAIN_SIZES[name])))
        rows += bench_group(group, args)
        line = f"  {name}: {rows[-len(group)]['audio_s_per_s']:.1f} audio s/s"
        if len(group) > 1:
            line += f", SpeechBrain {rows[-1]['audio_s_per_s']:.1f} (ours x{rows[-2]['audio_s_per_s'] / rows[-1]['audio_s_per_s']:.2f})"
        print(line, flush=True)
    ceiling = max(ceiling, matmul_gflops())  # other load on the machine only lowers it
    for row in rows:
        row["ceiling_fraction"] = row["gflops"] / ceiling
    print(_table(rows, ceiling, args))
    if args.json:
        atomic_write_text(args.json, json.dumps(dict(ceiling_gflops=ceiling, threads=args.threads, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
