"""``benchmarks/bench_gpu.py``: its CPU fallback runs in seconds and prints every figure the
GPU run prints (so ``make bench-gpu`` is ready when a CUDA machine is at hand)."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_fallback_prints_the_table(tiny_corpus, tmp_path, capsys):
    shutil.copytree(tiny_corpus, tmp_path / "corpus", ignore=shutil.ignore_patterns("shards"))
    _bench().main(["--cpu", "--data", str(tmp_path / "corpus"), "--steps", "1"])
    out = capsys.readouterr().out
    rows = re.findall(r"^(\w+)\s+fp32\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                      r"(model|loader)",
                      out, flags=re.M)
    assert [r[0] for r in rows] == ["ecapa_tdnn_tiny", "resnet34_tiny"]
    for _, steps, samples, model, loader, neck in rows:
        assert abs(float(samples) - float(steps) * 8) <= 0.1 and float(samples) > 0
        assert neck == ("loader" if float(loader) < float(model) else "model")
    assert len(re.findall(r"^embed \w+ fp32: [\d,]+ audio-hours per hour$", out, re.M)) == 2
