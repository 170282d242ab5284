"""Tar shards of a data dir in WebDataset's layout: sequential reads for VoxCeleb-size training.

A million small wav files make training read-bound (WeSpeaker moved to tar shards for this);
a shard is one tar of ``shard_size`` utterances read front to back. The layout is WebDataset's
(one sample = the members sharing a base name; written with ``webdataset.TarWriter``, read with
its tar iterators), so ``webdataset.WebDataset(...)`` and its tools read our shards too::

    OUT/shard-000000.tar    <base>.json  {"duration": s, "key": utt, "speaker": spk}
                            <base>.wav  (or .flac) 16 kHz mono PCM-16
    OUT/shards.txt          the shard list: one tar per line, relative to the list's folder
    OUT/shards.json         index: per shard its utterances and bytes; speakers; format

``<base>`` is the utterance key with ``%`` and ``.`` escaped (WebDataset splits names at the
first dot). Utterances are shuffled (seeded) across shards and sorted by key inside a shard.
Writing is resumable and atomic per shard (temporary name, then rename) and byte-reproducible
(mtime 0, uid/gid 0, fixed member order), so a killed run reruns to the same shards; the end
checks every shard's member list and size against the plan.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from r2n_audio.atomic import atomic_path, atomic_write_text
from r2n_audio.audio import load_audio
from r2n_audio.data.manifests import read_utt2dur, read_utt2spk, read_wav_scp, utt2dur_line
from r2n_audio.errors import AudioError, DataFormatError, R2NError
from r2n_audio.progress import Progress

__all__ = ["SHARD_LIST", "SHARD_INDEX", "ShardSet", "ShardReport", "write_shards",
           "read_shard_list", "verify_shards", "iter_shard"]

SHARD_LIST = "shards.txt"
SHARD_INDEX = "shards.json"
FORMATS = ("flac", "wav")
_DURATION_TOLERANCE = 0.01  # seconds: utt2dur is rounded to 1e-4, headers round to a sample


def member_base(key: str) -> str:
    """Tar member base name of an utterance key (WebDataset splits names at the first dot)."""
    return key.replace("%", "%25").replace(".", "%2E")


@dataclass
class ShardSet:
    """Shards to read: paths, utterances per shard, and the sorted speakers of their index."""

    paths: list[str]
    counts: list[int]
    speakers: list[str]
    sample_rate: int

    @property
    def utterances(self) -> int:
        return int(sum(self.counts))


@dataclass
class ShardReport:
    """What :func:`write_shards` did."""

    out_dir: Path
    shards: int
    written: int
    utterances: int
    speakers: int
    bytes: int
    seconds: float


# ---------------------------------------------------------------------------------- writing
def _plan(keys: list[str], shard_size: int, seed: int) -> list[list[str]]:
    """Shuffle the keys (seeded), cut into shards, sort each shard's keys."""
    order = np.random.default_rng([seed, 7]).permutation(len(keys))
    shuffled = [keys[i] for i in order]
    return [sorted(shuffled[i:i + shard_size]) for i in range(0, len(shuffled), shard_size)]


def _encode(wave: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, sample_rate, subtype="PCM_16", format=fmt.upper())
    return buffer.getvalue()


class _ShardError(Exception):
    """Aborts a shard inside its atomic block (so nothing is renamed into place)."""


def _write_shard(job: tuple) -> tuple:
    """Write one shard atomically; ``("ok", seconds)`` or ``("error", path, problem, key)``.

    Errors come back as values: exceptions with several arguments do not cross processes.
    """
    import webdataset as wds

    target, entries, fmt, sample_rate = job
    seconds = 0.0
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as stream:
            # mtime an int: a float one costs every member an extra PAX header.
            writer = wds.TarWriter(stream, user="", group="", mode=0o644, encoder=False,
                                   mtime=0)
            try:
                for entry in entries:
                    seconds += _add_utterance(writer, entry, fmt, sample_rate)
            finally:
                writer.close()
    except _ShardError as err:
        return ("error", *err.args)
    return "ok", seconds


def _add_utterance(writer, entry: tuple, fmt: str, sample_rate: int) -> float:
    key, path, speaker, expected = entry
    try:
        wave = load_audio(path, sample_rate, min_seconds=0.0).numpy()
    except AudioError as err:
        raise _ShardError(err.path, err.problem, key) from None
    duration = len(wave) / sample_rate
    if expected is not None and abs(expected - duration) > _DURATION_TOLERANCE:
        raise _ShardError("utt2dur", f"{key} is {expected} s here but {path} has "
                                     f"{duration:.4f} s; rewrite utt2dur from the audio", key)
    meta = {"duration": duration, "key": key, "speaker": speaker}
    writer.write({"__key__": member_base(key), fmt: _encode(wave, sample_rate, fmt),
                  "json": json.dumps(meta, sort_keys=True).encode()})
    return duration


def _entries(data_dir: Path) -> list[tuple[str, str, str, float | None]]:
    """(key, path, speaker, utt2dur seconds or None) for every utterance of a data dir."""
    wavs = read_wav_scp(data_dir / "wav.scp")
    speakers = read_utt2spk(data_dir / "utt2spk")
    missing = sorted(set(wavs) - set(speakers))
    if missing:
        raise DataFormatError(data_dir / "utt2spk", f"{len(missing)} utterances of wav.scp have "
                                                    f"no speaker, e.g. {missing[:3]}")
    durations = read_utt2dur(data_dir / "utt2dur") if (data_dir / "utt2dur").is_file() else {}
    return [(k, wavs[k], speakers[k], durations.get(k)) for k in sorted(wavs)]


def _shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def _run_jobs(jobs: list[tuple], workers: int, progress: bool) -> Iterator[tuple]:
    from r2n_audio.progress import Progress

    pool = ProcessPoolExecutor(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        with Progress(len(jobs), "prepare shards", unit="shard", quiet=not progress) as bar:
            for result in pool.map(_write_shard, jobs) if pool else map(_write_shard, jobs):
                bar.update()
                yield result
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def write_shards(data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 shard_size: int = 1000, format: str = "wav", jobs: int = 1, seed: int = 0,
                 sample_rate: int = 16000, progress: bool = False) -> ShardReport:
    """Pack a data dir (``wav.scp``, ``utt2spk``, optional ``utt2dur``) into tar shards.

    Parameters
    ----------
    data_dir, out_dir : path
        Input data dir; output folder (shards, :data:`SHARD_LIST`, :data:`SHARD_INDEX`).
    shard_size : int
        Utterances per shard (the last one holds the rest).
    format : {"wav", "flac"}
        Audio encoding in the shards (16-bit PCM either way): a loader worker cuts a 2 s crop
        from a wav member in 0.1 ms (a slice of the bytes), from FLAC in 2.6 ms (no seek
        table, so seeking decodes); FLAC takes ~35 % less disk.
    jobs : int
        Processes writing shards in parallel.
    seed : int
        Shuffle seed: same data dir, size and seed -> byte-identical shards.
    sample_rate : int
        Audio is resampled to this rate and mixed down to mono once, here.
    progress : bool
        Report progress (a bar on a terminal, a line every few seconds in a log).

    Raises
    ------
    DataFormatError
        Bad data dir, unreadable audio (naming the file), ``utt2dur`` disagreeing with the
        audio (naming its line), or an existing shard that is not the planned one.
    """
    if format not in FORMATS:
        raise R2NError(f"format must be one of {FORMATS}, got {format!r}")
    if shard_size < 1:
        raise R2NError(f"shard size must be >= 1, got {shard_size}")
    data_dir, out = Path(data_dir), Path(out_dir)
    entries = _entries(data_dir)
    by_key = {e[0]: e for e in entries}
    plan = _plan(list(by_key), shard_size, seed)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".shard-*.tar.*"):  # temporaries of a killed run
        stale.unlink()
    todo = [(out / _shard_name(i), [by_key[k] for k in keys], format, sample_rate)
            for i, keys in enumerate(plan) if not (out / _shard_name(i)).is_file()]
    seconds = 0.0
    for result in _run_jobs(todo, max(1, jobs), progress):
        if result[0] == "error":
            _, path, problem, key = result
            if path == "utt2dur":
                path = data_dir / "utt2dur"
                raise DataFormatError(path, problem, utt2dur_line(path, key))
            raise DataFormatError(path, f"{problem} (utterance {key})")
        seconds += result[1]
    index = _index(out, plan, format, sample_rate, seed, by_key)
    atomic_write_text(out / SHARD_INDEX, json.dumps(index, indent=1) + "\n")
    atomic_write_text(out / SHARD_LIST, "".join(_shard_name(i) + "\n" for i in range(len(plan))))
    return ShardReport(out, len(plan), len(todo), len(entries), len(index["speakers"]),
                       sum(s["bytes"] for s in index["shards"]), seconds)


def _index(out: Path, plan: list[list[str]], fmt: str, sample_rate: int, seed: int,
           by_key: dict) -> dict:
    """Check every shard against the plan (members in order, whole file) and index it."""
    shards = []
    for i, keys in enumerate(plan):
        path = out / _shard_name(i)
        expected = [f"{member_base(k)}.{ext}" for k in keys for ext in sorted((fmt, "json"))]
        names = _member_names(path)
        if names != expected:
            raise DataFormatError(path, f"holds {len(names) // 2} utterances, not the "
                                        f"{len(keys)} planned here (another data dir, seed, "
                                        f"size or format?); delete it, or use another OUT_DIR")
        shards.append({"name": path.name, "utterances": len(keys),
                       "bytes": path.stat().st_size})
    speakers = sorted({e[2] for e in by_key.values()})
    return {"format": fmt, "sample_rate": sample_rate, "seed": seed,
            "utterances": sum(len(k) for k in plan), "speakers": speakers, "shards": shards}


def _member_names(path: Path) -> list[str]:
    try:
        with tarfile.open(path, mode="r:") as tar:
            return [m.name for m in tar.getmembers()]
    except (tarfile.TarError, OSError) as err:
        raise DataFormatError(path, f"not a readable tar ({err}); delete it and rerun "
                                    f"`r2n-audio prepare shards`") from None


# ---------------------------------------------------------------------------------- reading
def _load_index(folder: Path, cache: dict) -> dict:
    if folder not in cache:
        path = folder / SHARD_INDEX
        if not path.is_file():
            raise DataFormatError(path, "missing: shards need the index `r2n-audio prepare "
                                        "shards` writes beside them")
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            index["by_name"] = {s["name"]: s for s in index["shards"]}
        except (ValueError, KeyError, TypeError) as err:
            raise DataFormatError(path, f"not a shard index ({err})") from None
        cache[folder] = index
    return cache[folder]


def read_shard_list(path: str | os.PathLike) -> ShardSet:
    """Read a shard list and check each shard against its index (exists, size): no tar opened.

    Raises
    ------
    DataFormatError
        Missing list, a listed shard missing or of another size than indexed (truncated),
        naming the list's line; shards of different sample rates.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "shard list not found (`r2n-audio prepare shards` writes "
                                    f"OUT_DIR/{SHARD_LIST})")
    indexes: dict = {}
    paths, counts, speakers, rates = [], [], set(), set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        shard = Path(line.strip()) if os.path.isabs(line.strip()) else path.parent / line.strip()
        if not shard.is_file():
            raise DataFormatError(path, f"shard {shard} not found", number)
        index = _load_index(shard.parent, indexes)
        entry = index["by_name"].get(shard.name)
        if entry is None:
            raise DataFormatError(path, f"shard {shard} is not in {shard.parent / SHARD_INDEX}",
                                  number)
        size = shard.stat().st_size
        if size != entry["bytes"]:
            raise DataFormatError(path, f"shard {shard} has {size} bytes, its index says "
                                        f"{entry['bytes']}: truncated or changed; rerun "
                                        f"`r2n-audio prepare shards`", number)
        paths.append(str(shard))
        counts.append(int(entry["utterances"]))
        speakers.update(index["speakers"])
        rates.add(int(index["sample_rate"]))
    if not paths:
        raise DataFormatError(path, "empty shard list")
    if len(rates) > 1:
        raise DataFormatError(path, f"shards of different sample rates {sorted(rates)}")
    return ShardSet(paths, counts, sorted(speakers), rates.pop())


def _grouped(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, tarfile.TarInfo]]]:
    """``(base, {extension: member})`` per sample, grouped as WebDataset groups (consecutive
    members sharing ``base_plus_ext``'s base); only headers are read."""
    from webdataset.tariterators import base_plus_ext

    base, group = None, {}
    for member in tar:
        prefix, ext = base_plus_ext(member.name) if member.isreg() else (None, None)
        if prefix is None:
            continue
        if prefix != base and group:
            yield base, group
            group = {}
        base = prefix
        group[ext.lower()] = member
    if group:
        yield base, group


def iter_shard(path: str | os.PathLike, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[str, str, float, str, bytes]]:
    """Utterances ``start``..``stop`` of a shard, read front to back (the data of earlier ones
    is skipped unread): ``(key, speaker, seconds, format, audio bytes)``.

    Reads the local file with random access (one read per member), not WebDataset's stream
    reader, whose 10 KB record reads cost a loader worker 0.7 ms per 2 s crop.

    Raises
    ------
    DataFormatError
        A truncated or unreadable tar, or a member without key, speaker or audio, naming the
        shard and the member.
    """
    last = "(none)"
    try:
        with tarfile.open(path, mode="r:") as tar:
            for n, (base, members) in enumerate(_grouped(tar)):
                if stop is not None and n >= stop:
                    return
                if n < start:
                    continue
                sample = {"__key__": base}
                for ext in ("json", *FORMATS):
                    if ext in members:
                        sample[ext] = _read_member(tar, members[ext])
                last = base
                yield _parse(path, sample)
    except (tarfile.TarError, OSError) as err:
        raise DataFormatError(path, f"truncated or unreadable after member {last} ({err}); "
                                    f"rerun `r2n-audio prepare shards`") from None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    data = tar.extractfile(member).read()
    if len(data) != member.size:
        raise tarfile.ReadError(f"{member.name}: {len(data)} of {member.size} bytes")
    return data


def _parse(path, sample: dict) -> tuple[str, str, float, str, bytes]:
    base = sample["__key__"]
    try:
        meta = json.loads(sample["json"])
        key, speaker, seconds = meta["key"], meta["speaker"], float(meta["duration"])
    except (KeyError, ValueError, TypeError) as err:
        raise DataFormatError(path, f"member {base}: no key, speaker and duration in its "
                                    f".json ({type(err).__name__}: {err})") from None
    fmt = next((f for f in FORMATS if f in sample), None)
    if fmt is None:
        raise DataFormatError(path, f"member {base}: no .flac or .wav audio")
    return key, speaker, seconds, fmt, sample[fmt]


def verify_shards(path: str | os.PathLike) -> ShardSet:
    """:func:`read_shard_list`, then read every shard through: member counts and contents."""
    shards = read_shard_list(path)
    for shard, count in zip(shards.paths, shards.counts):
        seen = sum(1 for _ in iter_shard(shard))
        if seen != count:
            raise DataFormatError(shard, f"holds {seen} utterances, its index says {count}")
    return shards
