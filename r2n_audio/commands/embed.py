"""``r2n-audio embed INPUT --model M -o OUT``: embed every file of a folder or a wav.scp.

Resumable and crash-safe:

- ``--format npy`` (default): one ``OUT/<key>.npy`` per utterance, each written atomically as
  soon as its batch is done; a rerun skips the keys already there.
- ``--format npz|ark``: embeddings are staged as npy files in ``OUT.partial/`` (same rules),
  then written to ``OUT`` once at the end, atomically, and the staging folder is removed. A
  rerun resumes from the staging folder and keeps what ``OUT`` already holds.

So a killed run never leaves a partial file under a final name, and killing then rerunning gives
what one uninterrupted run gives. Files that fail (path and reason) are listed in
``OUT.failed.txt`` beside the output (``emb.failed.txt`` for the folder ``emb``,
``emb.npz.failed.txt`` for ``emb.npz``) and skipped; the exit code is then 1. ``--strict``
stops at the first bad file instead (exit 2), keeping everything written so far.

Nothing a run reads is written over: an output (or its ``.scp`` companion, or the failed list)
that is the input list, an audio file or the model is refused before any work (exit 2). Folders
are searched through symlinked folders too, each real folder once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from r2n_audio.atomic import remove_stale_temps
from r2n_audio.audio import AUDIO_EXTENSIONS
from r2n_audio.commands._types import DEVICES, device, positive_float, positive_int
from r2n_audio.errors import DataFormatError, OutputError
from r2n_audio.progress import Progress, add_quiet_argument

HELP = "embed audio files (a folder or a wav.scp) with a model bundle"
_FAILED_HEADER = "# r2n-audio embed: files that failed (key<TAB>path<TAB>reason)\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``r2n-audio embed``."""
    parser.add_argument("input", help=f"folder (searched recursively, through symlinks, for "
                                      f"{'/'.join(e[1:] for e in AUDIO_EXTENSIONS)}), a "
                                      "wav.scp, or one audio file")
    parser.add_argument("--model", "-m", required=True, help="model bundle (.pt)")
    parser.add_argument("-o", "--output", required=True,
                        help="output: a folder for npy, a .npz file, or a .ark file (+ .scp)")
    parser.add_argument("--format", choices=("npy", "npz", "ark"), default=None,
                        help="store format (default: from the output's suffix, else npy)")
    parser.add_argument("--device", type=device, default="auto",
                        help=f"{DEVICES} (default auto)")
    parser.add_argument("--batch-seconds", type=positive_float, default=60.0,
                        help="padded audio seconds per batch (default 60)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="decoding threads (default 1)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="network precision (bf16 autocast; default fp32)")
    parser.add_argument("--overwrite", action="store_true", help="redo keys already embedded")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first bad file (exit 2) instead of skipping it")
    add_quiet_argument(parser)


def list_inputs(source: str | os.PathLike) -> dict[str, str]:
    """``{key: path}`` for a folder (keys = relative paths without extension), a wav.scp, or
    one audio file (key = its name without extension).

    Symlinked folders are followed; a folder reached twice (a link back up the tree, or two
    links to one folder) is searched once, under the first path in sorted order.

    Raises
    ------
    DataFormatError
        Missing input, unreadable folder, duplicate keys, or no audio found.
    """
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
    for path in _audio_files(source):
        key = utterance_key(path.relative_to(source).as_posix())
        if key in found:
            raise DataFormatError(path, f"two files give the key {key!r} ({found[key]}); "
                                        "rename one")
        found[key] = str(path)
    if not found:
        raise DataFormatError(source, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return found


def _audio_files(root: Path) -> Iterator[Path]:
    """Audio files under ``root`` in sorted order, following symlinked folders, each real
    folder once: (device, inode) pairs already searched are skipped, so links cannot loop."""

    def fail(err: OSError) -> None:
        raise DataFormatError(err.filename or root, f"cannot read folder: {err.strerror}")

    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, onerror=fail, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                yield Path(folder, name)


def _store(args: argparse.Namespace) -> tuple[str, Path, Path]:
    """(format, final output, npy folder written during the run)."""
    from r2n_audio.data.embeddings import store_format

    if args.output == "-":
        raise OutputError("-", "embed writes a folder, an .npz or an .ark/.scp; standard "
                               "output cannot hold them")
    out = Path(args.output)
    kind = args.format or store_format(out)
    if kind == "scp":
        kind = "ark"
    if kind in ("npz", "ark") and out.suffix.lower() not in {"npz": (".npz",),
                                                            "ark": (".ark", ".scp")}[kind]:
        out = out.with_suffix(f".{kind}")
    if kind == "npy" and out.is_file():
        raise DataFormatError(out, "is a file; npy output needs a folder (or pass --format)")
    staging = out if kind == "npy" else out.with_name(out.name + ".partial")
    return kind, out, staging


def failed_list_path(kind: str, out: str | os.PathLike) -> Path:
    """``OUT.failed.txt`` beside the output (an archive's ``.ark`` name for ark/scp), so two
    outputs in one folder keep their own lists and a user's ``failed.txt`` is never touched."""
    out = Path(os.path.abspath(out))
    if kind == "ark":
        out = out.with_suffix(".ark")
    return out.with_name(out.name + ".failed.txt")


def _check_outputs(args: argparse.Namespace, kind: str, out: Path, staging: Path,
                   failed: Path, inputs: dict[str, str]) -> None:
    """Refuse outputs that are inputs, and a failed list that is not ours, before any work."""
    from r2n_audio.atomic import refuse_overwriting_inputs

    outputs = [failed] if kind == "npy" else [out, staging, failed]
    if kind == "ark":
        outputs += [out.with_suffix(".ark"), out.with_suffix(".scp")]
    refuse_overwriting_inputs(outputs, [args.input, args.model])
    # Audio files by name only: outputs end in .npz/.ark/.scp/.failed.txt, and a stat per file
    # would cost seconds per million files on every rerun.
    names = {os.path.abspath(o): o for o in outputs}
    for path in inputs.values():
        if os.path.abspath(path) in names:
            raise OutputError(names[os.path.abspath(path)], f"it is an input of this command "
                                                            f"({path}); choose another output")
    if failed.is_file() and not _is_our_failed_list(failed):
        raise OutputError(failed, "exists and is not a list of failures written by "
                                  "r2n-audio embed; move it or choose another output")


def _is_our_failed_list(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(len(_FAILED_HEADER)) == _FAILED_HEADER


def _check_keys(source: str, inputs: dict[str, str]) -> None:
    """Every key must name its own ``.npy`` file (outputs and the staging folder are npy
    stores): refuse the first that does not, with its line and the key it collides with."""
    from r2n_audio.data.embeddings import npy_key_problem
    from r2n_audio.data.manifests import key_line

    for key in inputs:
        problem = npy_key_problem(key)
        if problem is None:
            continue
        line = key_line(source, key) if Path(source).is_file() else None
        plain = "/".join(part for part in key.split("/") if part not in ("", "."))
        clash = ""
        if plain != key and plain in inputs:
            where = key_line(source, plain) if Path(source).is_file() else None
            clash = (f"; it would be written to the same file as '{plain}'"
                     + (f" (line {where})" if where else ""))
        raise DataFormatError(source, f"key {key!r} {problem}{clash}; embedding keys must be "
                                      "plain relative paths: rename it", line)


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


def _write_failed(path: Path, failures: list[tuple[str, str, str]]) -> Path | None:
    from r2n_audio.atomic import atomic_write_text

    if failures:
        lines = "".join(f"{k}\t{p}\t{r}\n" for k, p, r in failures)
        atomic_write_text(path, _FAILED_HEADER + lines)
        return path
    if path.is_file() and _is_our_failed_list(path):
        path.unlink()  # stale list from an earlier run of ours; everything is done now
    return None


def _embed_all(embedder, inputs: dict[str, str], todo: list[str], staging: Path,
               args: argparse.Namespace) -> tuple[list[tuple[str, str, str]], float]:
    """Embed ``todo`` keys, saving each as soon as its batch is done; (failures, audio s)."""
    from r2n_audio.data.embeddings import save_npy_embedding

    failures: list[tuple[str, str, str]] = []
    seconds = 0.0
    with Progress(len(todo), "embed", unit="file", quiet=args.quiet) as progress:
        for res in embedder.iter_files([inputs[k] for k in todo], workers=args.workers):
            key = todo[res.index]
            if res.error is not None:
                if args.strict:
                    raise res.error
                failures.append((key, inputs[key], res.error.problem))
                progress.write(f"r2n-audio embed: skipped {res.error}")
            else:
                save_npy_embedding(staging, key, res.embedding)
                seconds += res.seconds
            progress.update()
    return failures, seconds


def run(args: argparse.Namespace) -> int:
    """Embed, write, report; 0 all done, 1 some files failed, 2 fatal (raised)."""
    from r2n_audio.inference.distributed import RankGroup
    from r2n_audio.inference.embedder import Embedder

    start = time.perf_counter()
    group = RankGroup.from_env()  # several processes under torchrun: a share each
    args.quiet = args.quiet or not group.is_main
    inputs = list_inputs(args.input)
    kind, out, staging = _store(args)
    failed = failed_list_path(kind, out)
    _check_keys(args.input, inputs)
    _check_outputs(args, kind, out, staging, failed, inputs)
    embedder = Embedder.from_pretrained(args.model, device=group.device(args.device),
                                        precision=args.precision,
                                        batch_seconds=args.batch_seconds)
    done = group.on_main(lambda: (remove_stale_temps(staging, ".npy"),
                                  _done_keys(kind, out, staging, args.overwrite))[1])
    todo = [k for k in inputs if k not in done]
    failures, seconds = group.total(*_embed_all(embedder, inputs, group.share(todo, inputs),
                                                staging, args))
    if not group.is_main:
        return 1 if failures else 0
    if kind != "npy":
        _finish_archive(kind, out, staging, args.overwrite)
    failed_list = _write_failed(failed, failures)
    print(f"embed: {len(todo) - len(failures)} done, {len(failures)} failed, "
          f"{len(inputs) - len(todo)} skipped (already embedded), {seconds / 3600:.3f} h of "
          f"audio, {time.perf_counter() - start:.1f} s wall -> {out}"
          + (f"; failures listed in {failed_list}" if failed_list else ""))
    return 1 if failures else 0


__all__ = ["HELP", "add_arguments", "run", "list_inputs", "failed_list_path"]
