"""EER + minDCF(0.01) + minDCF(0.05): r2n-audio versus scikit-learn and SpeechBrain, and a
Vox1-H-sized AS-Norm scoring run.

For each size N (10^4 ... 10^6 random trials, 10 % targets) it times, in the same run:

- ``r2n``: the three public calls ``compute_eer``, ``compute_min_dcf(0.01)``,
  ``compute_min_dcf(0.05)`` (three sorts);
- ``r2n one sort``: ``evaluate`` (the same numbers from one sort, what the CLI uses);
- ``sklearn``: ``roc_curve`` plus the EER / minDCF read off it;
- ``speechbrain``: ``EER`` + two ``minDCF`` calls (O(N^2) time and memory), only up to
  ``--sb-max`` trials.

Time is the best of ``--repeats`` runs. Memory is the peak allocated during one run: traced
with :mod:`tracemalloc` for the numpy implementations (exact), and for SpeechBrain, whose torch
allocations tracemalloc cannot see, the peak resident-set growth sampled every millisecond (the
script re-runs itself with ``MALLOC_MMAP_THRESHOLD_`` set so that freed arrays leave the
resident set and each run starts from the same floor).

Then a Vox1-H-sized problem (550k trials over 1,190 utterances, 256-d, AS-Norm against 6,000
cohort vectors, top 300) is scored through ``score_trials`` and
through ``r2n-audio score`` end to end (reading the trial file and an npy store).

Usage: ``python benchmarks/bench_metrics.py [--quick] [--sb-max N] [--repeats R]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from r2n_audio.scoring.metrics import compute_eer, compute_min_dcf, evaluate


class PeakRSS(contextlib.AbstractContextManager):
    """Peak growth of this process's resident memory (MiB) while the block runs."""

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self._start = self._peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.mib = (self._peak - self._start) / 2**20


class PeakTraced(contextlib.AbstractContextManager):
    """Peak memory (MiB) allocated through Python's allocators (numpy included)."""

    def __enter__(self) -> PeakTraced:
        tracemalloc.start()
        return self

    def __exit__(self, *exc) -> None:
        self.mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()


def _measure(fn: Callable[[], object], repeats: int,
             meter: type = PeakTraced) -> tuple[float, float, object]:
    with meter() as mem:
        out = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, mem.mib, out


def _ours(scores, labels):
    return (compute_eer(scores, labels)[0], compute_min_dcf(scores, labels, 0.01)[0],
            compute_min_dcf(scores, labels, 0.05)[0])


def _ours_one_sort(scores, labels):
    m = evaluate(scores, labels)
    return m["eer"], m["min_dcf_0.01"], m["min_dcf_0.05"]


def _sklearn(scores, labels):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    dcf = [(p * fnr + (1 - p) * fpr).min() / min(p, 1 - p) for p in (0.01, 0.05)]
    return ((fpr[i] + fnr[i]) / 2, *dcf)


def _speechbrain(scores, labels):
    import torch
    from speechbrain.utils.metric_stats import EER, minDCF

    pos = torch.from_numpy(scores[labels == 1])
    neg = torch.from_numpy(scores[labels == 0])
    # SpeechBrain's minDCF is unnormalised: divide by min(p, 1 - p) to compare.
    return (EER(pos, neg)[0], minDCF(pos, neg, p_target=0.01)[0] / 0.01,
            minDCF(pos, neg, p_target=0.05)[0] / 0.05)


def _trials(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.1).astype(np.int8)
    scores = (rng.standard_normal(n) + 2.5 * labels).astype(np.float32)  # float32 like real
    return scores, labels


def bench_metrics(sizes: list[int], sb_max: int, repeats: int) -> None:
    """Print one table row per (size, implementation) and the SpeechBrain ratio."""
    print(f"{'trials':>9}  {'implementation':<15} {'seconds':>9} {'peak MiB':>9}  "
          f"{'EER %':>7} {'DCF.01':>7} {'DCF.05':>7}")
    ratio = None
    _sklearn(*_trials(100))  # imports outside the measurements
    if sb_max:
        _speechbrain(*_trials(100))
    for n in sizes:
        scores, labels = _trials(n)
        impls = [("r2n", _ours), ("r2n one sort", _ours_one_sort), ("sklearn", _sklearn)]
        if n <= sb_max:
            impls.append(("speechbrain", _speechbrain))
        times = {}
        for name, fn in impls:
            torch_based = name == "speechbrain"
            sec, mib, (eer, d1, d5) = _measure(lambda: fn(scores, labels),
                                               1 if torch_based else repeats,
                                               PeakRSS if torch_based else PeakTraced)
            times[name] = sec
            print(f"{n:>9,}  {name:<15} {sec:>9.4f} {mib:>9.1f}  {100 * eer:>7.3f} "
                  f"{d1:>7.4f} {d5:>7.4f}")
        if "speechbrain" in times:
            ratio = (n, times["speechbrain"] / times["r2n"])
    if ratio:
        print(f"\nSpeechBrain / r2n (three calls) at {ratio[0]:,} trials: {ratio[1]:,.0f}x")


def _vox1h(seed: int = 0):
    """Embeddings, trials and cohort shaped like Vox1-H (cleaned: 550,894 trials)."""
    from r2n_audio.data.manifests import Trials

    rng = np.random.default_rng(seed)
    n_utt, dim, n_trials = 1190, 256, 550_894
    speakers = rng.standard_normal((119, dim))
    keys = [f"id{u // 10:05d}/v{u % 10}/00001" for u in range(n_utt)]
    emb = {k: (speakers[u // 10] + 1.5 * rng.standard_normal(dim)).astype(np.float32)
           for u, k in enumerate(keys)}
    draws = 2 * n_trials
    e = rng.integers(0, n_utt, draws)
    same = e // 10 * 10 + rng.integers(0, 10, draws)  # an utterance of the same speaker
    t = np.where(rng.random(draws) < 0.05, same, rng.integers(0, n_utt, draws))
    pairs = dict.fromkeys(zip(e.tolist(), t.tolist()))  # unique trials, in order
    pairs = [(a, b) for a, b in pairs if a != b][:n_trials]
    trials = Trials([keys[a] for a, _ in pairs], [keys[b] for _, b in pairs],
                    np.array([a // 10 == b // 10 for a, b in pairs], dtype=np.int8))
    cohort = rng.standard_normal((6000, dim)).astype(np.float32)
    return trials, emb, cohort


def bench_as_norm() -> None:
    """Score a Vox1-H-sized list with and without AS-Norm, in library and CLI form."""
    from r2n_audio.cli import main
    from r2n_audio.data.embeddings import save_embeddings
    from r2n_audio.data.manifests import write_trials
    from r2n_audio.scoring.cosine import score_trials

    trials, emb, cohort = _vox1h()
    print(f"\nVox1-H-sized: {len(trials):,} trials, {len(emb):,} utterances, 256-d, "
          f"cohort {len(cohort):,}, top-300")
    for name, kwargs in (("cosine", {}), ("cosine + AS-Norm", {"cohort": cohort})):
        sec, mib, _ = _measure(lambda: score_trials(trials, emb, top_n=300, **kwargs), 2,
                               PeakRSS)
        print(f"  score_trials, {name:<17} {sec:7.2f} s  peak +{mib:6.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_trials(tmp / "vox1_h.txt", trials, style="voxceleb")
        save_embeddings(tmp / "emb", emb)
        np.save(tmp / "cohort.npy", cohort)
        argv = ["score", str(tmp / "vox1_h.txt"), "--embeddings", str(tmp / "emb"), "--cohort",
                str(tmp / "cohort.npy"), "--output", str(tmp / "scores.txt"), "--json"]
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            main(argv)
            sec = time.perf_counter() - start
        print(f"  r2n-audio score (read list + npy store, AS-Norm, metrics, write scores): "
              f"{sec:.2f} s")


def _reexec_with_mmap_threshold() -> None:
    """Re-run under a fixed glibc mmap threshold: large blocks then return to the OS on free,
    so resident-set growth measures each run's own peak (glibc otherwise raises the threshold
    after the first large free and keeps freed memory resident)."""
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    _reexec_with_mmap_threshold()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="sizes 1e4 and 1e5, SpeechBrain at 2,000, no Vox1-H run")
    parser.add_argument("--sb-max", type=int, default=None,
                        help="largest size given to SpeechBrain (default 10,000; 2,000 quick)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    sb_max = args.sb_max or (2_000 if args.quick else 10_000)
    sizes = sorted({*sizes, *([sb_max] if sb_max < sizes[0] else [])})
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (timings are best of {args.repeats})\n")
    bench_metrics(sizes, sb_max, args.repeats)
    if not args.quick:
        bench_as_norm()


if __name__ == "__main__":
    main()
