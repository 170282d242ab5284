"""``r2n-audio make-corpus DIR``: write the built-in synthetic speaker corpus.

Prints a progress bar while generating and then the counts and the generation time; with
``--baseline`` also the EER of the no-training log-mel statistics baseline on its trials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "make the built-in synthetic speaker corpus (wav files, Kaldi data dirs, trials)"


def _count(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio make-corpus``."""
    parser.add_argument("out_dir", type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--speakers", type=_count(0), default=500,
                        help="training speakers (default 500)")
    parser.add_argument("--test-speakers", type=_count(2), default=40,
                        help="held-out speakers for the trial list (default 40)")
    parser.add_argument("--utts", type=_count(2), default=8,
                        help="utterances per speaker (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--min-seconds", type=float, default=2.0,
                        help="shortest utterance (default 2.0)")
    parser.add_argument("--max-seconds", type=float, default=4.0,
                        help="longest utterance (default 4.0)")
    parser.add_argument("--workers", type=_count(1),
                        help="worker processes (default: the CPUs available, at most 8)")
    parser.add_argument("--no-augment-sets", dest="augment_sets", action="store_false",
                        help="do not write the synthetic musan/ and rirs/ folders")
    parser.add_argument("--baseline", action="store_true",
                        help="also print the no-training baseline EER on the trials")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the corpus and print what was made."""
    from r2n_audio.data.synthetic import make_corpus

    info = make_corpus(
        args.out_dir, n_train_speakers=args.speakers, n_test_speakers=args.test_speakers,
        utts_per_speaker=args.utts, seed=args.seed, min_seconds=args.min_seconds,
        max_seconds=args.max_seconds, workers=args.workers, progress=not args.quiet,
        augment_sets=args.augment_sets)
    print(f"made {info.n_utterances} utterances ({info.audio_seconds / 60:.1f} min of audio) "
          f"of {info.n_train_speakers} training + {info.n_test_speakers} held-out speakers "
          f"in {info.seconds:.1f} s -> {info.out_dir}")
    print(f"trials: {info.n_trials} ({info.out_dir / 'trials.txt'})")
    if args.augment_sets:
        print(f"augmentation: {info.out_dir / 'musan'} (noise, music, speech) and "
              f"{info.out_dir / 'rirs'}")
    if args.baseline:
        from r2n_audio.scoring.baseline import baseline_eer

        eer = baseline_eer(info.out_dir / "test", info.out_dir / "trials.txt")
        print(f"baseline EER (mean+std log-mel, cosine, no training): {eer:.2f}%")
    return 0
