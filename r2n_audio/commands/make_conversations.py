"""``r2n-audio make-conversations DIR``: multi-speaker recordings and reference RTTMs.

The speakers are the held-out speakers of ``make-corpus --seed S`` (``tst0001``...), so a model
trained on that corpus's training speakers has never heard them. See
:mod:`r2n_audio.data.synthetic.conversations` for the turn-taking, overlap, noise and layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r2n_audio.commands._types import at_least, float_at_least, non_negative_float
from r2n_audio.errors import DataFormatError
from r2n_audio.progress import add_quiet_argument

HELP = "make a synthetic conversation set (wav files, reference RTTMs) for diarization"

__all__ = ["HELP", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio make-conversations``."""
    parser.add_argument("out_dir", type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--conversations", type=at_least(1), default=10,
                        help="number of recordings (default 10)")
    parser.add_argument("--seconds", type=float_at_least(5.0), default=60.0,
                        help="length of each recording, about (default 60)")
    parser.add_argument("--min-speakers", type=at_least(2), default=2,
                        help="speakers of the first recording (default 2)")
    parser.add_argument("--max-speakers", type=at_least(2), default=6,
                        help="most speakers; recording i has min + i mod (max - min + 1) "
                             "(default 6)")
    parser.add_argument("--overlap", type=non_negative_float, default=0.0,
                        help="share of the speech with two speakers at once, 0-0.5 (default 0)")
    parser.add_argument("--seed", type=at_least(0), default=0,
                        help="the corpus seed whose held-out speakers talk (default 0)")
    parser.add_argument("--test-speakers", type=at_least(2), default=40,
                        help="held-out speakers of that corpus (default 40)")
    parser.add_argument("--workers", type=at_least(1),
                        help="worker processes (default: the CPUs available, at most 8)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder that is not a conversation set")
    add_quiet_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Generate the set and print what was made."""
    from r2n_audio.data.synthetic.conversations import make_conversations

    out = args.out_dir
    if out.exists() and not out.is_dir():
        raise DataFormatError(out, "is not a folder")
    if (out.is_dir() and any(out.iterdir()) and not (out / "conversations.json").is_file()
            and not args.overwrite):
        raise DataFormatError(out, "is not empty and holds no earlier conversation set; choose "
                                   "an empty folder or pass --overwrite")
    info = make_conversations(out, n_conversations=args.conversations, seed=args.seed,
                              n_test_speakers=args.test_speakers,
                              min_speakers=args.min_speakers, max_speakers=args.max_speakers,
                              seconds=args.seconds, overlap=args.overlap, workers=args.workers,
                              progress=not args.quiet)
    print(f"made {info.n_conversations} conversations ({info.audio_seconds / 60:.1f} min of "
          f"audio, {info.speech_seconds / 60:.1f} min of speech, {100 * info.overlap_share:.1f}% "
          f"of it overlapped) -> {info.out_dir}")
    print(f"references: {out / 'rttm'}/<key>.rttm and {out / 'ref.rttm'}; audio list: "
          f"{out / 'wav.scp'}")
    return 0
