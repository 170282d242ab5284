"""``r2n-audio embed INPUT --model M -o OUT``: embed every file of a folder or a wav.scp.

Resumable and crash-safe:

- ``--format npy`` (default): one ``OUT/<key>.npy`` per utterance, each written atomically as
  soon as its batch is done; a rerun skips the keys already there.
- ``--format npz|ark``: embeddings are staged as npy files in ``OUT.partial/`` (same rules),
  then written to ``OUT`` once at the end, atomically, and the staging folder is removed. A
  rerun resumes from the staging folder and keeps what ``OUT`` already holds.

So a killed run never leaves a partial file under a final name, and killing then rerunning gives
what one uninterrupted run gives. Files that fail (path and reason) are listed in
``failed.txt`` beside the output (``OUT``'s folder) and skipped; the exit code is then 1.
``--strict`` stops at the first bad file instead (exit 2), keeping everything written so far.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from r2n_audio.errors import DataFormatError

HELP = "embed audio files (a folder or a wav.scp) with a model bundle"
_FAILED_HEADER = "# r2n-audio embed: files that failed (key<TAB>path<TAB>reason)\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio embed``."""
    parser.add_argument("input", help="folder (searched recursively for wav/flac/ogg), a "
                                      "wav.scp, or one audio file")
    parser.add_argument("--model", "-m", required=True, help="model bundle (.pt)")
    parser.add_argument("-o", "--output", required=True,
                        help="output: a folder for npy, a .npz file, or a .ark file (+ .scp)")
    parser.add_argument("--format", choices=("npy", "npz", "ark"), default=None,
                        help="store format (default: from the output's suffix, else npy)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--batch-seconds", type=float, default=60.0,
                        help="padded audio seconds per batch (default 60)")
    parser.add_argument("--workers", type=int, default=1, help="decoding threads (default 1)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="network precision (bf16 autocast; default fp32)")
    parser.add_argument("--overwrite", action="store_true", help="redo keys already embedded")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first bad file (exit 2) instead of skipping it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def list_inputs(source: str | os.PathLike) -> dict[str, str]:
    """``{key: path}`` for a folder (keys = relative paths without extension), a wav.scp, or
    one audio file (key = its name without extension).

    Raises
    ------
    DataFormatError
        Missing input, unreadable folder, duplicate keys, or no audio found.
    """
    from r2n_audio.audio import AUDIO_EXTENSIONS
    from r2n_audio.data.manifests import read_wav_scp, utterance_key

    source = Path(source)
    if not source.exists():
        raise DataFormatError(source, "input not found (expected a folder or a wav.scp)")
    if source.is_file():
        if source.suffix.lower() in AUDIO_EXTENSIONS:
            return {utterance_key(source.name): str(source)}
        return read_wav_scp(source)
    if not os.access(source, os.R_OK | os.X_OK):
        raise DataFormatError(source, "cannot read this folder (permission denied)")
    found: dict[str, str] = {}

    def fail(err: OSError) -> None:
        raise DataFormatError(err.filename or source, f"cannot read folder: {err.strerror}")

    for folder, dirs, files in os.walk(source, onerror=fail):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                path = Path(folder, name)
                key = utterance_key(path.relative_to(source).as_posix())
                if key in found:
                    raise DataFormatError(path, f"two files give the key {key!r} "
                                                f"({found[key]}); rename one")
                found[key] = str(path)
    if not found:
        raise DataFormatError(source, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return found


def _store(args: argparse.Namespace) -> tuple[str, Path, Path]:
    """(format, final output, npy folder written during the run)."""
    from r2n_audio.data.embeddings import store_format

    out = Path(args.output)
    kind = args.format or store_format(out)
    if kind == "scp":
        kind = "ark"
    if kind in ("npz", "ark") and out.suffix.lower() not in (f".{kind}", ".scp"):
        out = out.with_suffix(f".{kind}")
    if kind == "npy" and out.is_file():
        raise DataFormatError(out, "is a file; npy output needs a folder (or pass --format)")
    staging = out if kind == "npy" else out.with_name(out.name + ".partial")
    return kind, out, staging


def _clean_stale_temps(folder: Path) -> None:
    """Remove hidden temporaries a killed run left (atomic writes name them ``.<name>.*``)."""
    if folder.is_dir():
        for tmp in folder.rglob(".*.npy"):
            tmp.unlink(missing_ok=True)


def _done_keys(kind: str, out: Path, staging: Path, overwrite: bool) -> set[str]:
    from r2n_audio.data.embeddings import load_embeddings, npy_keys

    if overwrite:
        if staging.is_dir() and staging != out:
            shutil.rmtree(staging)
        return set()
    done = npy_keys(staging)
    if kind != "npy" and out.exists():
        done |= set(load_embeddings(out))
    return done


def _finish_archive(kind: str, out: Path, staging: Path, overwrite: bool) -> None:
    """Merge the staged npy files (and what ``out`` held) into ``out``, atomically."""
    from r2n_audio.data.embeddings import load_embeddings, npy_keys, save_embeddings

    merged = {} if overwrite or not out.exists() else load_embeddings(out)
    if npy_keys(staging):
        merged.update(load_embeddings(staging))
    if merged:
        save_embeddings(out, merged, format=kind)
    if staging.is_dir():
        shutil.rmtree(staging)


def _write_failed(out: Path, failures: list[tuple[str, str, str]]) -> Path | None:
    from r2n_audio.atomic import atomic_write_text

    path = out.parent / "failed.txt"
    if failures:
        lines = "".join(f"{k}\t{p}\t{r}\n" for k, p, r in failures)
        atomic_write_text(path, _FAILED_HEADER + lines)
        return path
    if path.is_file() and path.read_text(encoding="utf-8").startswith(_FAILED_HEADER):
        path.unlink()  # stale list from an earlier run of ours; everything is done now
    return None


def _embed_all(embedder, inputs: dict[str, str], todo: list[str], staging: Path,
               args: argparse.Namespace) -> tuple[list[tuple[str, str, str]], float]:
    """Embed ``todo`` keys, saving each as soon as its batch is done; (failures, audio s)."""
    from tqdm import tqdm

    from r2n_audio.data.embeddings import save_npy_embedding

    failures: list[tuple[str, str, str]] = []
    seconds = 0.0
    with tqdm(total=len(todo), unit="file", file=sys.stderr, disable=args.no_progress,
              dynamic_ncols=True) as bar:
        for res in embedder.iter_files([inputs[k] for k in todo], workers=args.workers):
            key = todo[res.index]
            if res.error is not None:
                if args.strict:
                    raise res.error
                failures.append((key, inputs[key], res.error.problem))
                tqdm.write(f"r2n-audio embed: skipped {res.error}", file=sys.stderr)
            else:
                try:
                    save_npy_embedding(staging, key, res.embedding)
                    seconds += res.seconds
                except ValueError as err:  # a key that cannot be a file name
                    failures.append((key, inputs[key], str(err)))
            bar.update(1)
    return failures, seconds


def run(args: argparse.Namespace) -> int:
    """Embed, write, report; 0 all done, 1 some files failed, 2 fatal (raised)."""
    from r2n_audio.inference.embedder import Embedder

    start = time.perf_counter()
    inputs = list_inputs(args.input)
    kind, out, staging = _store(args)
    embedder = Embedder.from_pretrained(args.model, device=args.device, precision=args.precision,
                                        batch_seconds=args.batch_seconds)
    _clean_stale_temps(staging)
    done = _done_keys(kind, out, staging, args.overwrite)
    todo = [k for k in inputs if k not in done]
    failures, seconds = _embed_all(embedder, inputs, todo, staging, args)
    if kind != "npy":
        _finish_archive(kind, out, staging, args.overwrite)
    failed_list = _write_failed(out, failures)
    print(f"embed: {len(todo) - len(failures)} done, {len(failures)} failed, "
          f"{len(inputs) - len(todo)} skipped (already embedded), {seconds / 3600:.3f} h of "
          f"audio, {time.perf_counter() - start:.1f} s wall -> {out}"
          + (f"; failures listed in {failed_list}" if failed_list else ""))
    return 1 if failures else 0


__all__ = ["HELP", "add_arguments", "run", "list_inputs"]
