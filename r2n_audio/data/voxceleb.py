"""VoxCeleb preparation: data dirs for VoxCeleb2-dev and VoxCeleb1, Kaldi trial lists.

The official downloads unpack to::

    <vox1>/wav/idXXXXX/<video>/NNNNN.wav          VoxCeleb1 (dev and test together)
    <vox2>/aac/idXXXXX/<video>/NNNNN.m4a          VoxCeleb2 dev (also <vox2>/dev/aac/...)

VoxCeleb2's m4a files are converted once to 16 kHz mono wav with ffmpeg into
``<vox2>/wav/...`` (or another folder); an already converted ``wav/`` tree is used as it is.
Utterance keys are ``idXXXXX/<video>/NNNNN``, the form the official trial lists use, so
embeddings and trials line up. The cleaned lists ``veri_test2.txt`` (Vox1-O, 37,611 trials),
``list_test_all2.txt`` (Vox1-E) and ``list_test_hard2.txt`` (Vox1-H) — and the original ones
without the ``2`` — are converted to Kaldi format when given.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from r2n_audio.atomic import atomic_path
from r2n_audio.audio import audio_duration
from r2n_audio.data.manifests import (
    read_trials,
    spk2utt_from_utt2spk,
    write_spk2utt,
    write_trials,
    write_utt2dur,
    write_utt2spk,
    write_wav_scp,
)
from r2n_audio.errors import DataFormatError, R2NError
from r2n_audio.progress import Progress

__all__ = ["TRIAL_LISTS", "PrepareReport", "scan_voxceleb", "convert_m4a_tree",
           "prepare_voxceleb"]

log = logging.getLogger(__name__)

# official file name -> name of the Kaldi list written under <out>/trials/
TRIAL_LISTS = {
    "veri_test2.txt": "vox1_O_cleaned.txt",
    "list_test_all2.txt": "vox1_E_cleaned.txt",
    "list_test_hard2.txt": "vox1_H_cleaned.txt",
    "veri_test.txt": "vox1_O.txt",
    "list_test_all.txt": "vox1_E.txt",
    "list_test_hard.txt": "vox1_H.txt",
}
_SPEAKER = re.compile(r"id\d{5}")
_FFMPEG_HELP = (
    "install ffmpeg (apt-get install ffmpeg, brew install ffmpeg or conda install ffmpeg) and "
    "run again, or convert the files yourself to 16 kHz mono wav in the same layout, e.g. "
    "'ffmpeg -i aac/id00012/abc/00001.m4a -ac 1 -ar 16000 wav/id00012/abc/00001.wav', and pass "
    "the folder holding that wav/ tree as --vox2")


@dataclass
class PrepareReport:
    """What :func:`prepare_voxceleb` wrote.

    Attributes
    ----------
    utterances : dict of str to int
        Data dir name (``vox1``, ``vox2_dev``) -> utterances listed.
    speakers : dict of str to int
    trials : dict of str to int
        Kaldi trial list written -> number of trials.
    failed : list of str
        One line per input that could not be used (the others were prepared).
    """

    utterances: dict[str, int] = field(default_factory=dict)
    speakers: dict[str, int] = field(default_factory=dict)
    trials: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _audio_roots(root: Path, subdirs: tuple[str, ...]) -> list[Path]:
    """Those of ``root/<sub>`` that exist, else ``[root]`` if it holds idXXXXX folders."""
    found = [root / sub for sub in subdirs if (root / sub).is_dir()]
    if not found and root.is_dir() and any(_SPEAKER.fullmatch(p.name) for p in root.iterdir()):
        found = [root]
    return found


def scan_voxceleb(root: str | os.PathLike, extension: str = ".wav") -> dict[str, Path]:
    """Map ``idXXXXX/<video>/NNNNN`` keys to files under ``root/idXXXXX/<video>/``.

    Files with another extension and folders not named like a speaker are ignored.

    Returns
    -------
    dict of str to Path
        Sorted by key; absolute paths.
    """
    root = Path(root).resolve()
    found: dict[str, Path] = {}
    for speaker in sorted(os.scandir(root), key=lambda e: e.name):
        if not (speaker.is_dir() and _SPEAKER.fullmatch(speaker.name)):
            continue
        for video in sorted(os.scandir(speaker.path), key=lambda e: e.name):
            if not video.is_dir():
                continue
            for audio in sorted(os.scandir(video.path), key=lambda e: e.name):
                stem, ext = os.path.splitext(audio.name)
                if ext.lower() == extension and audio.is_file():
                    found[f"{speaker.name}/{video.name}/{stem}"] = Path(audio.path)
    return found


class _ConversionError(Exception):
    pass


def _convert_one(ffmpeg: str, source: Path, target: Path) -> str | None:
    """Convert one file (atomically: no half-written wav); return an error line or None."""
    try:
        with atomic_path(target) as tmp:
            done = subprocess.run(
                [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-ac", "1",
                 "-ar", "16000", "-c:a", "pcm_s16le", str(tmp)],
                capture_output=True, text=True, check=False)
            if done.returncode != 0 or tmp.stat().st_size <= 44:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise _ConversionError(f"{source}: ffmpeg failed ({last})")
    except _ConversionError as err:
        return str(err)
    return None


def convert_m4a_tree(aac_root: str | os.PathLike, wav_root: str | os.PathLike,
                     jobs: int | None = None, progress: bool = False) -> list[str]:
    """Convert ``aac_root/id*/*/*.m4a`` to 16 kHz mono wav in the same layout under ``wav_root``.

    Files already converted are kept. Returns one error line per file that failed.

    Raises
    ------
    R2NError
        When ffmpeg is not on the PATH (with how to install it or convert by hand).
    """
    ffmpeg = shutil.which("ffmpeg")
    sources = scan_voxceleb(aac_root, ".m4a")
    todo = [(src, Path(wav_root) / f"{key}.wav") for key, src in sources.items()
            if not (Path(wav_root) / f"{key}.wav").is_file()]
    if todo and ffmpeg is None:
        raise R2NError(f"{aac_root}: {len(todo)} m4a files need converting to wav and ffmpeg "
                       f"is not on the PATH: {_FFMPEG_HELP}")
    if todo:
        log.info("converting %d of %d m4a files to 16 kHz wav under %s", len(todo),
                 len(sources), wav_root)
    errors = []
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool, \
            Progress(len(todo), "m4a -> wav", unit="file", quiet=not (progress and todo)) as bar:
        for error in pool.map(lambda job: _convert_one(ffmpeg, *job), todo):
            if error:
                errors.append(error)
            bar.update()
    return errors


def _write_data_dir(folder: Path, files: dict[str, Path], jobs: int | None = None) -> int:
    """wav.scp, utt2spk, spk2utt and utt2dur (headers read once, here, in threads, so that
    training start-up reads none)."""
    utt2spk = {key: key.split("/", 1)[0] for key in files}
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        seconds = list(pool.map(audio_duration, files.values()))
    write_utt2dur(folder / "utt2dur", dict(zip(files, seconds)))
    write_wav_scp(folder / "wav.scp", {k: str(p) for k, p in files.items()})
    write_utt2spk(folder / "utt2spk", utt2spk)
    write_spk2utt(folder / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    return len(set(utt2spk.values()))


def _vox2_roots(vox2: Path, wav_dir: Path | None) -> tuple[Path | None, Path | None]:
    """(m4a root or None, wav root or None) for a VoxCeleb2 folder.

    ``vox2`` may hold ``aac/`` and/or ``wav/`` (or ``dev/aac``, ``dev/wav``), or be such a tree
    itself (idXXXXX folders directly inside), of m4a or of wav files.
    """
    aac = next((p for p in (vox2 / "aac", vox2 / "dev" / "aac") if p.is_dir()), None)
    wav = wav_dir or next((p for p in (vox2 / "wav", vox2 / "dev" / "wav") if p.is_dir()), None)
    if aac is None and wav is None and _audio_roots(vox2, ()):
        if scan_voxceleb(vox2, ".m4a"):
            aac = vox2
        else:
            wav = vox2
    if aac is not None and wav is None:
        wav = aac.parent / "wav"
    return aac, wav


def _prepare_vox2(vox2: Path, out: Path, wav_dir: Path | None, jobs: int | None,
                  progress: bool, report: PrepareReport) -> None:
    aac, wav = _vox2_roots(vox2, wav_dir)
    if aac is not None:
        report.failed += convert_m4a_tree(aac, wav, jobs, progress)
    if wav is None or not wav.is_dir():
        raise DataFormatError(vox2, "no VoxCeleb2 audio found: expected aac/idXXXXX/<video>/"
                                    "NNNNN.m4a or wav/idXXXXX/<video>/NNNNN.wav under it")
    files = scan_voxceleb(wav)
    if not files:
        raise DataFormatError(wav, "no idXXXXX/<video>/NNNNN.wav files under it")
    report.speakers["vox2_dev"] = _write_data_dir(out / "vox2_dev", files, jobs)
    report.utterances["vox2_dev"] = len(files)


def _prepare_vox1(vox1: Path, out: Path, report: PrepareReport) -> dict[str, Path]:
    # dev and test may have been unpacked into one wav/ or side by side
    files: dict[str, Path] = {}
    for wav in _audio_roots(vox1, ("wav", "dev/wav", "test/wav", "vox1_dev_wav/wav",
                                   "vox1_test_wav/wav")):
        files.update(scan_voxceleb(wav))
    files = dict(sorted(files.items()))
    if not files:
        raise DataFormatError(vox1, "no VoxCeleb1 audio found: expected wav/idXXXXX/<video>/"
                                    "NNNNN.wav under it")
    report.speakers["vox1"] = _write_data_dir(out / "vox1", files)
    report.utterances["vox1"] = len(files)
    return files


def _convert_trials(trials_dir: Path, out: Path, vox1_keys: set[str],
                    report: PrepareReport) -> None:
    present = [name for name in TRIAL_LISTS if (trials_dir / name).is_file()]
    if not present:
        raise DataFormatError(trials_dir, f"none of the official trial lists "
                                          f"({', '.join(TRIAL_LISTS)}) is in this folder")
    for name in present:
        trials = read_trials(trials_dir / name)
        missing = [(k, line) for e, t, line in zip(trials.enroll, trials.test, trials.lines)
                   for k in (e, t) if k not in vox1_keys]
        if missing:
            key, line = missing[0]
            report.failed.append(
                f"{trials_dir / name}:{line}: {len(missing)} trial utterances are not in the "
                f"VoxCeleb1 audio (first: {key}); Vox1-E/H need both vox1 dev and test")
            continue
        write_trials(out / "trials" / TRIAL_LISTS[name], trials)
        report.trials[TRIAL_LISTS[name]] = len(trials)


def prepare_voxceleb(out: str | os.PathLike, vox1: str | os.PathLike | None = None,
                     vox2: str | os.PathLike | None = None,
                     trials_dir: str | os.PathLike | None = None,
                     vox2_wav: str | os.PathLike | None = None, jobs: int | None = None,
                     progress: bool = False) -> PrepareReport:
    """Write ``out/vox2_dev`` and ``out/vox1`` data dirs and ``out/trials/*.txt``.

    Parameters
    ----------
    out : str or PathLike
        Output folder (e.g. ``data/voxceleb``).
    vox1, vox2 : str or PathLike, optional
        Download folders (see the module docstring); at least one.
    trials_dir : str or PathLike, optional
        Folder holding any of :data:`TRIAL_LISTS`; needs ``vox1``.
    vox2_wav : str or PathLike, optional
        Where converted VoxCeleb2 wavs go (default: ``wav/`` beside ``aac/``).
    jobs : int, optional
        Parallel ffmpeg processes (default: CPU count).
    progress : bool
        Show a progress bar while converting.

    Returns
    -------
    PrepareReport
    """
    if vox1 is None and vox2 is None:
        raise R2NError("give --vox1 and/or --vox2 (the folders the downloads were unpacked to)")
    if trials_dir is not None and vox1 is None:
        raise R2NError("the Vox1 trial lists need --vox1 (their utterances are VoxCeleb1's)")
    for path in (vox1, vox2, trials_dir):
        if path is not None and not Path(path).is_dir():
            raise DataFormatError(path, "not a folder")
    out = Path(out)
    report = PrepareReport()
    if vox2 is not None:
        _prepare_vox2(Path(vox2), out, Path(vox2_wav) if vox2_wav else None, jobs, progress,
                      report)
    if vox1 is not None:
        files = _prepare_vox1(Path(vox1), out, report)
        if trials_dir is not None:
            _convert_trials(Path(trials_dir), out, set(files), report)
    return report
