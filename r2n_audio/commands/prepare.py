"""``r2n-audio prepare voxceleb``: data dirs and Kaldi trial lists from a VoxCeleb download.

Writes ``OUT/vox2_dev/{wav.scp,utt2spk,spk2utt}``, ``OUT/vox1/...`` and, given the official
lists, ``OUT/trials/vox1_{O,E,H}_cleaned.txt``. VoxCeleb2's m4a files are converted to wav with
ffmpeg first (once; converted files are kept). Exit code 1 when some files or lists could not
be used and the rest was prepared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "prepare a corpus download (voxceleb) as Kaldi data dirs and trial lists"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio prepare``."""
    parser.add_argument("corpus", choices=["voxceleb"], help="which corpus")
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Prepare the data dirs and print a summary; 1 if some inputs failed."""
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
