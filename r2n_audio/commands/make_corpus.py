"""``r2n-audio make-corpus DIR``: write the built-in synthetic speaker corpus.

Shows progress while generating (:mod:`r2n_audio.progress`) and then prints the counts and the
generation time; with ``--baseline`` also the EER of the no-training log-mel statistics
baseline on its trials.

``DIR`` must be empty, missing, or an earlier corpus of this generator (its ``corpus.json``
says so): a folder holding anything else (a data dir with its own ``wav.scp``, ``utt2spk``,
``trials.txt``) is refused unless ``--overwrite`` is given, since the corpus's files would
replace those.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from r2n_audio.commands._types import at_least, non_negative_int, positive_float
from r2n_audio.errors import OutputError
from r2n_audio.progress import add_quiet_argument

__all__ = ["HELP", "add_arguments", "run"]

HELP = "make the built-in synthetic speaker corpus (wav files, Kaldi data dirs, trials)"
_GENERATOR = "r2n_audio.data.synthetic"  # the "generator" its corpus.json records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio make-corpus``."""
    parser.add_argument("out_dir", type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--speakers", type=at_least(0), default=500,
                        help="training speakers (default 500)")
    parser.add_argument("--test-speakers", type=at_least(2), default=40,
                        help="held-out speakers for the trial list (default 40)")
    parser.add_argument("--utts", type=at_least(2), default=8,
                        help="utterances per speaker (default 8)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed (default 0)")
    parser.add_argument("--min-seconds", type=positive_float, default=2.0,
                        help="shortest utterance (default 2.0)")
    parser.add_argument("--max-seconds", type=positive_float, default=4.0,
                        help="longest utterance (default 4.0)")
    parser.add_argument("--workers", type=at_least(1),
                        help="worker processes (default: the CPUs available, at most 8)")
    parser.add_argument("--no-augment-sets", dest="augment_sets", action="store_false",
                        help="do not write the synthetic musan/ and rirs/ folders")
    parser.add_argument("--baseline", action="store_true",
                        help="also print the no-training baseline EER on the trials")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into DIR even if it holds files that are not an earlier "
                             "corpus of this generator")
    add_quiet_argument(parser)


def _refuse_foreign_folder(out_dir: Path) -> None:
    """Refuse a non-empty ``out_dir`` that is not an earlier corpus of this generator."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputError(out_dir, "is a file, not a folder")
    if not any(out_dir.iterdir()):
        return
    try:
        made = json.loads((out_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        made = None
    if not (isinstance(made, dict) and made.get("generator") == _GENERATOR):
        raise OutputError(out_dir, "the folder is not empty and is not an earlier corpus of "
                                   f"{_GENERATOR} (no corpus.json of it; an interrupted run "
                                   "leaves none): choose an empty folder, or pass --overwrite "
                                   "to write the corpus's files over what is there")


def run(args: argparse.Namespace) -> int:
    """Generate the corpus and print what was made."""
    from r2n_audio.data.synthetic import make_corpus

    if not args.overwrite:
        _refuse_foreign_folder(args.out_dir)
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
