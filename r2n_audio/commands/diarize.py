"""``r2n-audio diarize INPUT --model M -o OUT_DIR``: who spoke when, as one RTTM per recording.

Writes ``OUT_DIR/<key>.rttm`` (file id = key) atomically as each recording is done; a rerun
skips the keys already there (``--overwrite`` redoes them), so a killed run rerun gives what
one uninterrupted run gives. With ``--reference`` every recording (done now or earlier) is
scored with pyannote.metrics and a DER table is printed (``--json``: one JSON object instead).

A recording that cannot be diarized (unreadable, shorter than one window, more speakers asked
for than windows found) is reported on stderr with its path and reason and skipped (exit 1); a
recording without speech gets an empty RTTM and a note. Reference RTTMs are all read before
anything is written, so a malformed one stops the run with one line naming file and line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from r2n_audio.atomic import remove_stale_temps
from r2n_audio.commands._types import (cosine_or_off, device, non_negative_float,
                                       positive_float, positive_int)
from r2n_audio.diarization.clustering import MERGE_ABOVE, SPLIT_BELOW
from r2n_audio.diarization.vad import SILERO_LEVEL
from r2n_audio.errors import DataFormatError, R2NError
from r2n_audio.progress import add_quiet_argument

HELP = "speaker diarization: one RTTM per recording, DER against reference RTTMs"

__all__ = ["HELP", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio diarize``."""
    parser.add_argument("input", help="folder (searched recursively for audio), a wav.scp, or "
                                      "one audio file")
    parser.add_argument("--model", "-m", required=True, help="model bundle (.pt)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR",
                        help="folder for <key>.rttm files")
    parser.add_argument("--vad", choices=("silero", "energy", "oracle", "none"),
                        default="silero", help="speech detector (default silero; oracle takes "
                                               "the reference's speech)")
    parser.add_argument("--vad-threshold", type=positive_float, default=0.35,
                        metavar="P", help="Silero speech probability threshold, 0-1 "
                                          "(default 0.35; Silero's own is 0.5)")
    parser.add_argument("--vad-level", type=non_negative_float, default=SILERO_LEVEL,
                        metavar="L", help="Silero hears the recording scaled so its 99.9th "
                                          "percentile of |x| is L, at most +40 dB (default "
                                          f"{SILERO_LEVEL}; 0: as recorded)")
    parser.add_argument("--reference", type=Path, metavar="RTTM_DIR",
                        help="reference RTTMs (<key>.rttm in a folder, or one RTTM file): "
                             "print DER per file and overall")
    parser.add_argument("--num-speakers", type=positive_int, metavar="N",
                        help="known number of speakers")
    parser.add_argument("--min-speakers", type=positive_int, metavar="A",
                        help="fewest speakers the count may give (default 1)")
    parser.add_argument("--max-speakers", type=positive_int, metavar="B",
                        help="most speakers the count may give (default 10)")
    parser.add_argument("--window", type=positive_float, default=1.5,
                        help="window seconds (default 1.5)")
    parser.add_argument("--hop", type=positive_float, default=0.75,
                        help="window step seconds (default 0.75)")
    parser.add_argument("--context", type=non_negative_float, default=3.0, metavar="SECONDS",
                        help="also embed a window this long centred on each window and average "
                             "both scales' cosines in the clustering (default 3.0; 0 = off)")
    parser.add_argument("--frames", choices=("window", "shared"), default="shared",
                        help="shared (default): front-end and network trunk once per speech "
                             "region, each window pooled from its frames; window: embed each "
                             "window alone (about 2x slower; slightly different embeddings)")
    parser.add_argument("--clustering", choices=("spectral", "ahc"), default="spectral",
                        help="spectral with eigengap speaker count (default), or "
                             "agglomerative (average linkage, cosine distance)")
    parser.add_argument("--threshold", type=positive_float,
                        help="ahc: cosine distance at which merging stops (default 0.7, set "
                             "with the demo model: tune it per model)")
    parser.add_argument("--split-below", type=cosine_or_off, default=SPLIT_BELOW, metavar="COS",
                        help="spectral, speaker count estimated: cut a cluster in two when its "
                             "halves' centroids have a cosine below COS (default "
                             f"{SPLIT_BELOW}, set with the demo model; off: never)")
    parser.add_argument("--merge-above", type=cosine_or_off, default=MERGE_ABOVE, metavar="COS",
                        help="spectral, speaker count estimated: then merge clusters whose "
                             f"centroids have a cosine of at least COS (default {MERGE_ABOVE}; "
                             "off: never)")
    parser.add_argument("--collar", type=non_negative_float, default=0.25,
                        help="DER: unscored seconds on each side of reference boundaries "
                             "(default 0.25)")
    parser.add_argument("--skip-overlap", action="store_true",
                        help="DER: do not score overlapped reference speech (default: scored)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object")
    parser.add_argument("--device", type=device, default="auto",
                        help="auto, cpu or cuda (default auto)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="network precision (default fp32)")
    parser.add_argument("--overwrite", action="store_true", help="redo recordings already done")
    add_quiet_argument(parser)


def _check_args(args: argparse.Namespace, inputs: dict[str, str]) -> None:
    if args.vad == "oracle" and args.reference is None:
        raise R2NError("--vad oracle takes the speech from --reference; give --reference")
    if args.num_speakers and (args.min_speakers or args.max_speakers):
        raise R2NError("give either --num-speakers or --min-speakers/--max-speakers, not both")
    if args.max_speakers and args.min_speakers and args.min_speakers > args.max_speakers:
        raise R2NError(f"--min-speakers {args.min_speakers} is more than --max-speakers "
                       f"{args.max_speakers}")
    if not args.collar >= 0:
        raise R2NError(f"--collar must be >= 0 seconds, got {args.collar}")
    out = args.output
    if out.exists() and not out.is_dir():
        raise DataFormatError(out, "is not a folder; -o takes the folder for the RTTM files")
    if args.reference is not None and args.reference.resolve() == out.resolve():
        raise DataFormatError(out, "is the --reference folder; write the hypotheses elsewhere "
                                   "(the references would be replaced)")
    resolved = {Path(p).resolve() for p in inputs.values()}
    if any((out / f"{k}.rttm").resolve() in resolved for k in inputs):
        raise DataFormatError(out, "an output RTTM would replace an input file")


def _references(args: argparse.Namespace, inputs: dict[str, str]) -> dict[str, list] | None:
    """Every recording's reference turns, read before anything is written."""
    if args.reference is None:
        return None
    from r2n_audio.diarization.rttm import reference_turns

    return {key: reference_turns(args.reference, key) for key in inputs}


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"r2n-audio diarize: {message}", file=sys.stderr, flush=True)


def _diarize_all(args, diarizer, inputs, references, todo):
    """Diarize ``todo`` keys, writing each RTTM at once; returns (durations, failures, seconds)."""
    from r2n_audio.diarization.rttm import write_rttm

    durations: dict[str, float] = {}
    failures: list[tuple[str, str, str]] = []
    audio_seconds = 0.0
    last = time.monotonic()
    for n, key in enumerate(todo, start=1):
        try:
            result = diarizer(inputs[key], num_speakers=args.num_speakers,
                              min_speakers=args.min_speakers, max_speakers=args.max_speakers,
                              reference=None if references is None else references[key],
                              uri=key)
        except R2NError as err:
            failures.append((key, inputs[key], str(err)))
            print(f"r2n-audio diarize: skipped {key}: {err}", file=sys.stderr, flush=True)
            continue
        write_rttm(args.output / f"{key}.rttm", key, result)
        durations[key] = result.duration
        audio_seconds += result.duration
        if result.note:
            _say(args, f"{key}: {result.note} (empty RTTM written)")
        if time.monotonic() - last > 5 or n == len(todo):
            last = time.monotonic()
            _say(args, f"{n}/{len(todo)} recordings ({audio_seconds / 60:.1f} min of audio)")
    return durations, failures, audio_seconds


def _score(args, inputs, references, durations, failed: set[str]) -> dict:
    from r2n_audio.audio import audio_duration
    from r2n_audio.diarization.der import DERScorer
    from r2n_audio.diarization.rttm import read_rttm

    scorer = DERScorer(collar=args.collar, skip_overlap=args.skip_overlap)
    for key in inputs:
        if key in failed:
            continue
        hypothesis = read_rttm(args.output / f"{key}.rttm", file_id=key)[key]
        duration = durations.get(key)
        scorer.add(key, references[key], hypothesis,
                   duration if duration is not None else audio_duration(inputs[key]))
    return scorer.report()


def _print_table(report: dict) -> None:
    rows = [("recording", "DER %", "missed %", "false alarm %", "confusion %", "speech s")]
    for key, r in list(report["files"].items()) + [("overall", report["total"])]:
        rows.append((key, *(f"{100 * r[k]:.2f}" for k in ("der", "missed", "false_alarm",
                                                           "confusion")), f"{r['speech']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    print(f"DER by pyannote.metrics: collar {report['collar']} s on each side of reference "
          f"boundaries, overlapped speech {'not ' if report['skip_overlap'] else ''}scored")


def run(args: argparse.Namespace) -> int:
    """Diarize, write, score; 0 all done, 1 some recordings failed, 2 fatal (raised)."""
    from r2n_audio.commands.embed import list_inputs
    from r2n_audio.diarization.pipeline import Diarizer

    start = time.perf_counter()
    inputs = list_inputs(args.input)
    _check_args(args, inputs)
    references = _references(args, inputs)
    diarizer = Diarizer.from_pretrained(args.model, device=args.device, precision=args.precision,
                                        vad=args.vad, vad_threshold=args.vad_threshold,
                                        vad_level=args.vad_level or None,
                                        window=args.window, hop=args.hop,
                                        context=args.context, frames=args.frames,
                                        clustering=args.clustering, threshold=args.threshold,
                                        split_below=args.split_below,
                                        merge_above=args.merge_above)
    remove_stale_temps(args.output, ".rttm")
    todo = [k for k in inputs if args.overwrite or not (args.output / f"{k}.rttm").is_file()]
    durations, failures, seconds = _diarize_all(args, diarizer, inputs, references, todo)
    report = None
    if references is not None:
        report = _score(args, inputs, references, durations, {k for k, _, _ in failures})
    summary = (f"diarize: {len(todo) - len(failures)} done, {len(failures)} failed, "
               f"{len(inputs) - len(todo)} skipped (already done), {seconds / 3600:.3f} h of "
               f"audio, {time.perf_counter() - start:.1f} s wall -> {args.output}")
    if args.json:
        out = {"done": len(todo) - len(failures), "skipped": len(inputs) - len(todo),
               "failed": [{"key": k, "path": p, "reason": r} for k, p, r in failures],
               "output": str(args.output)}
        if report is not None:
            out.update(report)
        print(json.dumps(out, indent=1))
    else:
        if report is not None:
            _print_table(report)
        print(summary)
    return 1 if failures else 0
