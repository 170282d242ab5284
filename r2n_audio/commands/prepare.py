"""``r2n-audio prepare``: data dirs from a corpus download, and tar shards of a data dir.

``prepare voxceleb`` writes ``OUT/vox2_dev/{wav.scp,utt2spk,spk2utt,utt2dur}``, ``OUT/vox1/...``
and, given the official lists, ``OUT/trials/vox1_{O,E,H}_cleaned.txt``. VoxCeleb2's m4a files
are converted to wav with ffmpeg first (once; converted files are kept). Exit code 1 when some
files or lists could not be used and the rest was prepared.

``prepare shards DATA_DIR OUT_DIR`` packs a data dir into shuffled tar shards for training
(:mod:`r2n_audio.data.shards`); resumable, and a rerun of a killed run gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r2n_audio.progress import add_quiet_argument

HELP = "prepare a corpus download (voxceleb) as Kaldi data dirs, or a data dir as tar shards"


def _add_voxceleb(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vox1", type=Path,
                        help="VoxCeleb1 folder holding wav/idXXXXX/<video>/NNNNN.wav")
    parser.add_argument("--vox2", type=Path,
                        help="VoxCeleb2 dev folder holding aac/idXXXXX/<video>/NNNNN.m4a "
                             "(or an already converted wav/ tree)")
    parser.add_argument("--out", type=Path, default=Path("data/voxceleb"),
                        help="output folder (default data/voxceleb)")
    parser.add_argument("--trials-dir", type=Path,
                        help="folder with veri_test2.txt, list_test_all2.txt, "
                             "list_test_hard2.txt (and/or the original lists)")
    parser.add_argument("--vox2-wav", type=Path,
                        help="where converted VoxCeleb2 wavs go (default: wav/ beside aac/)")
    parser.add_argument("--jobs", type=int, help="parallel ffmpeg processes (default: CPUs)")
    add_quiet_argument(parser)


def _add_shards(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR",
                        help="data dir with wav.scp and utt2spk (utt2dur is checked if present)")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                        help="folder for shard-NNNNNN.tar, shards.txt and shards.json")
    parser.add_argument("--shard-size", type=int, default=1000,
                        help="utterances per shard (default 1000)")
    parser.add_argument("--format", choices=("flac", "wav"), default="wav",
                        help="audio encoding in the shards: wav (default) cuts a 2 s crop ~20x "
                             "faster, flac takes ~35%% less disk")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    add_quiet_argument(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio prepare voxceleb`` and ``r2n-audio prepare shards``."""
    sub = parser.add_subparsers(dest="corpus", metavar="WHAT")
    sub.required = True
    _add_voxceleb(sub.add_parser("voxceleb", help="VoxCeleb1/2 downloads -> data dirs, trials"))
    _add_shards(sub.add_parser("shards", help="a data dir -> shuffled tar shards"))


def _run_shards(args: argparse.Namespace) -> int:
    from r2n_audio.data.shards import SHARD_LIST, write_shards

    report = write_shards(args.data_dir, args.out_dir, shard_size=args.shard_size,
                          format=args.format, jobs=args.jobs, seed=args.seed,
                          progress=not args.quiet)
    print(f"{report.shards} shards ({report.written} written now), "
          f"{report.utterances} utterances, {report.speakers} speakers, "
          f"{report.bytes / 1e6:.1f} MB, verified -> {args.out_dir / SHARD_LIST}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Prepare and print a summary; 1 if some inputs failed."""
    if args.corpus == "shards":
        return _run_shards(args)
    from r2n_audio.data.voxceleb import prepare_voxceleb

    report = prepare_voxceleb(args.out, vox1=args.vox1, vox2=args.vox2,
                              trials_dir=args.trials_dir, vox2_wav=args.vox2_wav,
                              jobs=args.jobs, progress=not args.quiet)
    for name, count in report.utterances.items():
        print(f"{args.out / name}: {count} utterances, {report.speakers[name]} speakers")
    for name, count in report.trials.items():
        print(f"{args.out / 'trials' / name}: {count} trials")
    for line in report.failed[:20]:
        print(f"r2n-audio prepare: failed: {line}", file=sys.stderr)
    if len(report.failed) > 20:
        print(f"r2n-audio prepare: ... and {len(report.failed) - 20} more failures",
              file=sys.stderr)
    return 1 if report.failed else 0
