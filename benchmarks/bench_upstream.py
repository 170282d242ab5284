"""Benchmark each imported architecture against its upstream implementation, same weights, CPU.

For every pair (our registered model, the upstream class it reproduces) both networks get the
same random weights (upstream's state dict loaded into ours through the importer's key map and a
strict load), then run eval-mode forwards on the same batch of 16 x 3 s of fbank features
(16, 298, 80) under ``torch.no_grad()`` on one thread. Repeats are interleaved (ours, upstream,
ours, upstream...) so a change in machine load hits both alike; the table reports the best and
the median time of each and the ratio upstream / ours (> 1: ours is faster), in CPU seconds of
this process (``time.process_time``: the fair clock on a shared machine) and in wall seconds.
Outputs are checked to agree (max relative difference) on the warm-up call before any timing.

Upstream code: WeSpeaker's ``wespeaker/models/*.py`` (``wespeaker-unofficial``, loaded without
its package ``__init__``), 3D-Speaker's ``speakerlab.models``.

Usage::

    python benchmarks/bench_upstream.py --quick          # one model per family, 3 repeats
    python benchmarks/bench_upstream.py                   # every pair and size, 5 repeats
    python benchmarks/bench_upstream.py --extra           # only the further sizes
    python benchmarks/bench_upstream.py --models 'eres2net*' --json exp/bench_upstream.json
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from r2n_audio.atomic import atomic_write_text
from r2n_audio.inference.importers.common import Arch, fit_architecture
from r2n_audio.inference.importers.upstream import randomize_all, wespeaker_models_module
from r2n_audio.inference.importers.wespeaker import wespeaker_arch


@dataclass(frozen=True)
class Pair:
    """Our model and the upstream constructor it reproduces."""

    name: str
    upstream: str
    build: Callable[[], torch.nn.Module]
    arch: Callable[[], Arch]


def _wespeaker(module: str, cls: str, **kwargs) -> Callable[[], torch.nn.Module]:
    return lambda: getattr(wespeaker_models_module(module), cls)(**kwargs)


def _speakerlab(module: str, cls: str, **kwargs) -> Callable[[], torch.nn.Module]:
    return lambda: getattr(importlib.import_module(module), cls)(**kwargs)


def _we_arch(name: str, **model_args) -> Callable[[], Arch]:
    return lambda: wespeaker_arch(name, {"feat_dim": 80, **model_args}, "bench")


def _3d_arch(model: str, **args) -> Callable[[], Arch]:
    return lambda: Arch(model, model, {"feat_dim": 80, **args}, source="3dspeaker")


_TSTP = {"pooling_func": "TSTP", "two_emb_layer": False}
_SL = "speakerlab.models"
PAIRS = [
    Pair("resnet34", "WeSpeaker ResNet34", _wespeaker("resnet", "ResNet34", feat_dim=80,
         embed_dim=256, **_TSTP), _we_arch("ResNet34", embed_dim=256)),
    Pair("resnet221", "WeSpeaker ResNet221", _wespeaker("resnet", "ResNet221", feat_dim=80,
         embed_dim=256, **_TSTP), _we_arch("ResNet221", embed_dim=256)),
    Pair("resnet293", "WeSpeaker ResNet293", _wespeaker("resnet", "ResNet293", feat_dim=80,
         embed_dim=256, **_TSTP), _we_arch("ResNet293", embed_dim=256)),
    Pair("eres2net34_base", "WeSpeaker ERes2Net34_Base", _wespeaker(
        "eres2net", "ERes2Net34_Base", feat_dim=80, embed_dim=192, **_TSTP),
        _we_arch("ERes2Net34_Base", embed_dim=192)),
    Pair("campplus_e512", "WeSpeaker CAMPPlus", _wespeaker(
        "campplus", "CAMPPlus", feat_dim=80, embed_dim=512, pooling_func="TSTP"),
        _we_arch("CAMPPlus", embed_dim=512)),
    Pair("ecapa_tdnn_ws_glob_c1024", "WeSpeaker ECAPA_TDNN_GLOB_c1024", _wespeaker(
        "ecapa_tdnn", "ECAPA_TDNN_GLOB_c1024", feat_dim=80, embed_dim=192),
        _we_arch("ECAPA_TDNN_GLOB_c1024", embed_dim=192)),
    Pair("ecapa_tdnn_ws_c512", "WeSpeaker ECAPA_TDNN_c512", _wespeaker(
        "ecapa_tdnn", "ECAPA_TDNN_c512", feat_dim=80, embed_dim=192),
        _we_arch("ECAPA_TDNN_c512", embed_dim=192)),
    Pair("simam_resnet34", "WeSpeaker SimAM_ResNet34_ASP", _wespeaker(
        "samresnet", "SimAM_ResNet34_ASP", embed_dim=256, acoustic_dim=80),
        _we_arch("SimAM_ResNet34_ASP", embed_dim=256)),
    Pair("eres2net_base", "3D-Speaker ERes2Net", _speakerlab(
        f"{_SL}.eres2net.ERes2Net", "ERes2Net", feat_dim=80, embedding_size=192),
        _3d_arch("eres2net_base")),
    Pair("eres2net_large", "3D-Speaker ERes2Net m64", _speakerlab(
        f"{_SL}.eres2net.ERes2Net", "ERes2Net", feat_dim=80, embedding_size=192, m_channels=64),
        _3d_arch("eres2net_large")),
    Pair("eres2netv2", "3D-Speaker ERes2NetV2", _speakerlab(
        f"{_SL}.eres2net.ERes2NetV2", "ERes2NetV2", feat_dim=80, embedding_size=192),
        _3d_arch("eres2netv2")),
    Pair("campplus", "3D-Speaker CAMPPlus", _speakerlab(
        f"{_SL}.campplus.DTDNN", "CAMPPlus", feat_dim=80, embedding_size=192),
        _3d_arch("campplus")),
]
#: Further sizes of the families above (same code paths): in the full run, or with --extra.
EXTRA = [
    Pair("resnet152", "WeSpeaker ResNet152", _wespeaker("resnet", "ResNet152", feat_dim=80,
         embed_dim=256, **_TSTP), _we_arch("ResNet152", embed_dim=256)),
    Pair("eres2net34_large", "WeSpeaker ERes2Net34_Large", _wespeaker(
        "eres2net", "ERes2Net34_Large", feat_dim=80, embed_dim=192, **_TSTP),
        _we_arch("ERes2Net34_Large", embed_dim=192)),
    Pair("eres2net34_aug", "WeSpeaker ERes2Net34_aug", _wespeaker(
        "eres2net", "ERes2Net34_aug", feat_dim=80, embed_dim=192, **_TSTP),
        _we_arch("ERes2Net34_aug", embed_dim=192)),
    Pair("eres2net_huge", "3D-Speaker ERes2Net_huge", _speakerlab(
        f"{_SL}.eres2net.ERes2Net_huge", "ERes2Net", feat_dim=80, embedding_size=192),
        _3d_arch("eres2net_huge")),
    Pair("eres2netv2_w24_s4_ep4", "3D-Speaker ERes2NetV2 w24 s4 ep4", _speakerlab(
        f"{_SL}.eres2net.ERes2NetV2", "ERes2NetV2", feat_dim=80, embedding_size=192,
        baseWidth=24, scale=4, expansion=4), _3d_arch("eres2netv2_w24_s4_ep4")),
    Pair("ecapa_tdnn_ws_c1024", "WeSpeaker ECAPA_TDNN_c1024", _wespeaker(
        "ecapa_tdnn", "ECAPA_TDNN_c1024", feat_dim=80, embed_dim=192),
        _we_arch("ECAPA_TDNN_c1024", embed_dim=192)),
    Pair("ecapa_tdnn_ws_glob_c512", "WeSpeaker ECAPA_TDNN_GLOB_c512", _wespeaker(
        "ecapa_tdnn", "ECAPA_TDNN_GLOB_c512", feat_dim=80, embed_dim=192),
        _we_arch("ECAPA_TDNN_GLOB_c512", embed_dim=192)),
    Pair("simam_resnet100", "WeSpeaker SimAM_ResNet100_ASP", _wespeaker(
        "samresnet", "SimAM_ResNet100_ASP", embed_dim=256, acoustic_dim=80),
        _we_arch("SimAM_ResNet100_ASP", embed_dim=256)),
]
QUICK = ["resnet221", "eres2net34_base", "ecapa_tdnn_ws_glob_c1024", "simam_resnet34",
         "eres2netv2", "campplus"]


def _time(fn: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one call: on a shared machine the CPU
    time is the fairer measure (another process's load stretches wall time, not CPU time)."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def _output(out) -> torch.Tensor:
    return out[-1] if isinstance(out, tuple) else out


def bench_pair(pair: Pair, feats: torch.Tensor, repeats: int) -> dict:
    """Check agreement, then time ours and upstream interleaved; seconds per batch (CPU and
    wall, best and median of ``repeats`` after one warm-up call each)."""
    upstream = randomize_all(pair.build())
    arch, ours = fit_architecture([pair.arch()], upstream.state_dict(), pair.name)
    nets = {"ours": ours, "upstream": lambda x: _output(upstream(x))}
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "upstream": []}
    with torch.no_grad():
        out = {k: net(feats) for k, net in nets.items()}  # the warm-up call
        rel = float((out["ours"] - out["upstream"]).abs().max() / out["upstream"].abs().max())
        del out
        for _ in range(repeats):
            for k, net in nets.items():
                runs[k].append(_time(lambda: net(feats)))
    row = {"model": pair.name, "upstream": pair.upstream, "label": arch.label,
           "params": sum(p.numel() for p in ours.parameters()), "max_rel_diff": rel}
    for clock, i in (("cpu", 0), ("wall", 1)):
        for k, v in runs.items():
            row[f"{k}_{clock}_best_s"] = min(t[i] for t in v)
            row[f"{k}_{clock}_median_s"] = statistics.median(t[i] for t in v)
        for stat in ("best", "median"):
            row[f"ratio_{clock}_{stat}"] = (row[f"upstream_{clock}_{stat}_s"]
                                            / row[f"ours_{clock}_{stat}_s"])
    return row


_HEADER = ("| ours | upstream | params | max rel diff | ours CPU s (best / median) | "
           "upstream CPU s (best / median) | speed-up CPU (best / median) | speed-up wall (best / "
           "median) |\n|---|---|---|---|---|---|---|---|")


def _table_row(row: dict) -> str:
    return (f"| `{row['model']}` | {row['upstream']} | {row['params']:,} | "
            f"{row['max_rel_diff']:.1e} | {row['ours_cpu_best_s']:.2f} / "
            f"{row['ours_cpu_median_s']:.2f} | {row['upstream_cpu_best_s']:.2f} / "
            f"{row['upstream_cpu_median_s']:.2f} | **{row['ratio_cpu_best']:.2f}x** / "
            f"{row['ratio_cpu_median']:.2f}x | {row['ratio_wall_best']:.2f}x / "
            f"{row['ratio_wall_median']:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--extra", action="store_true",
                        help="only the further sizes (" + ", ".join(p.name for p in EXTRA) + ")")
    parser.add_argument("--models", help="fnmatch pattern over our model names")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs each (5; quick 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    candidates = PAIRS if args.quick else PAIRS + EXTRA
    if args.extra:
        candidates = EXTRA
    pairs = [p for p in candidates if (not args.quick or p.name in QUICK or args.extra)
             and (args.models is None or fnmatch.fnmatch(p.name, args.models))]
    repeats = args.repeats or (3 if args.quick else 5)
    frames = int(args.seconds * 100) - 2  # Kaldi framing of 3 s: 298 frames
    feats = torch.randn(args.batch, frames, 80, generator=torch.Generator().manual_seed(0))
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), batch {args.batch} x {args.seconds:g} s, {repeats} "
          f"interleaved repeats (+1 warm-up)")
    print(_HEADER)
    rows = []
    for pair in pairs:
        rows.append(bench_pair(pair, feats, repeats))
        print(_table_row(rows[-1]), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
