"""``make_corpus``: write a synthetic speaker corpus in the layout of a user's own corpus.

Layout under ``out_dir``::

    wav/<spk>/<utt>.wav          16 kHz mono PCM_16
    wav.scp utt2spk spk2utt utt2dur   every utterance
    train/{wav.scp,utt2spk,spk2utt,utt2dur}   training speakers (spk0001, ...)
    test/{wav.scp,utt2spk,spk2utt,utt2dur}    held-out speakers (tst0001, ...)
    trials.txt                   Kaldi trials over the held-out speakers
    musan/ rirs/                 synthetic noise, music, babble and RIRs for augmentation
    corpus.json                  parameters, counts, generation time, speaker summaries

Utterance keys are wav paths relative to ``wav/`` without the extension (``spk0001/u0003``).
Every speaker and utterance is drawn from its own generator seeded by ``(seed, group, speaker,
utterance)``, so the files do not depend on the number of workers, and the held-out speakers do
not depend on the number of training speakers.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from r2n_audio.atomic import atomic_path, atomic_write_text
from r2n_audio.audio import audio_duration
from r2n_audio.data.manifests import (
    Trials,
    spk2utt_from_utt2spk,
    write_spk2utt,
    write_trials,
    write_utt2dur,
    write_utt2spk,
    write_wav_scp,
)
from r2n_audio.data.synthetic.channel import channel_gain, record
from r2n_audio.data.synthetic.noises import augmentation_jobs, write_augmentation_file
from r2n_audio.data.synthetic.synth import SAMPLE_RATE, speak
from r2n_audio.data.synthetic.voice import SpeakerVoice, sample_speaker
from r2n_audio.errors import R2NError
from r2n_audio.progress import Progress

__all__ = ["GENERATOR_VERSION", "CorpusInfo", "make_corpus", "make_trials",
           "synthesize_utterance", "speaker_voice"]

# Bumped whenever the same seed would give different audio: a corpus.json with another
# version was made by another generator (a recipe can regenerate it).
GENERATOR_VERSION = 3
_TRAIN, _TEST = 0, 1
_PREFIX = {_TRAIN: "spk", _TEST: "tst"}


@dataclass(frozen=True)
class CorpusInfo:
    """What ``make_corpus`` wrote.

    Attributes
    ----------
    out_dir : Path
    n_train_speakers, n_test_speakers, n_utterances, n_trials : int
    audio_seconds : float
        Total duration of the audio written.
    seconds : float
        Wall-clock generation time.
    """

    out_dir: Path
    n_train_speakers: int
    n_test_speakers: int
    n_utterances: int
    n_trials: int
    audio_seconds: float
    seconds: float


def speaker_voice(seed: int, group: int, index: int) -> SpeakerVoice:
    """The voice of speaker ``index`` of ``group`` (0 = train, 1 = held out) for ``seed``."""
    return sample_speaker(np.random.default_rng([seed, group, index, 0]))


def synthesize_utterance(voice: SpeakerVoice, rng: np.random.Generator,
                         min_seconds: float, max_seconds: float) -> np.ndarray:
    """One recording (N,) float32 at 16 kHz: random speech by ``voice`` in a random channel."""
    n = int(round(rng.uniform(min_seconds, max_seconds) * SAMPLE_RATE))
    speech = speak(voice, rng, n, channel_gain=channel_gain(rng))
    return record(speech, rng)


def _write_utterance(job: tuple) -> float:
    path, seed, group, index, utt, min_s, max_s = job
    rng = np.random.default_rng([seed, group, index, utt + 1])
    audio = synthesize_utterance(speaker_voice(seed, group, index), rng, min_s, max_s)
    # Encoding in memory and writing once is ~6x faster than libsndfile's buffered file writes.
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return len(audio) / SAMPLE_RATE


def _write_data_dir(folder: Path, keys: list[str], rel: str, seconds: dict[str, float]) -> None:
    """wav.scp (paths relative to ``folder``), utt2spk, spk2utt, utt2dur for ``keys``."""
    utt2spk = {k: k.split("/")[0] for k in keys}
    write_utt2dur(folder / "utt2dur", {k: seconds[k] for k in keys})
    write_wav_scp(folder / "wav.scp", {k: f"{rel}wav/{k}.wav" for k in keys})
    write_utt2spk(folder / "utt2spk", utt2spk)
    write_spk2utt(folder / "spk2utt", spk2utt_from_utt2spk(utt2spk))


def _nontarget_pairs(spk: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct pair codes ``i * n + j`` (i < j, different speakers), sorted.

    Small lists enumerate every pair; large ones sample, so memory stays O(count).
    """
    n = len(spk)
    if n <= 2000:
        a, b = np.triu_indices(n, k=1)
        codes = (a * n + b)[spk[a] != spk[b]]
        return np.sort(rng.choice(codes, min(count, len(codes)), replace=False))
    codes = np.empty(0, np.int64)
    while len(codes) < count:
        i, j = rng.integers(n, size=(2, 2 * count))
        keep = spk[i] != spk[j]
        lo, hi = np.minimum(i, j)[keep], np.maximum(i, j)[keep]
        codes = np.unique(np.concatenate([codes, lo * n + hi]))
    return np.sort(rng.choice(codes, count, replace=False))


def make_trials(spk2utt: dict[str, list[str]], seed: int) -> Trials:
    """Every same-speaker pair plus as many different-speaker pairs (at least 1,000, or all).

    Pairs are unordered (enroll before test in ``spk2utt`` order), each listed once, sorted.
    """
    keys = [k for utts in spk2utt.values() for k in utts]
    spk = np.array([i for i, utts in enumerate(spk2utt.values()) for _ in utts])
    n = len(keys)
    target = []
    for s in range(len(spk2utt)):
        idx = np.flatnonzero(spk == s)
        i, j = np.triu_indices(len(idx), k=1)
        target.append(idx[i] * n + idx[j])
    target = np.concatenate(target)
    n_non = min(n * (n - 1) // 2 - len(target), max(len(target), 1000))
    codes = np.sort(np.concatenate(
        [target, _nontarget_pairs(spk, n_non, np.random.default_rng([seed, 2]))]))
    a, b = codes // n, codes % n
    return Trials([keys[i] for i in a], [keys[i] for i in b], (spk[a] == spk[b]).astype(np.int8))


def _check(n_train: int, n_test: int, utts: int, min_s: float, max_s: float) -> None:
    if n_train < 0 or n_test < 2 or utts < 2:
        raise R2NError(
            f"make_corpus needs >= 0 training speakers, >= 2 held-out speakers and >= 2 "
            f"utterances per speaker (got {n_train}, {n_test}, {utts})")
    if not 0.5 <= min_s <= max_s:
        raise R2NError(f"utterance lengths need 0.5 <= min_seconds <= max_seconds "
                       f"(got {min_s}, {max_s})")


def _call(job: tuple) -> float:
    writer, args = job
    return writer(args)


def _run_jobs(jobs: list[tuple], workers: int, progress: bool) -> float:
    """Run every ``(writer, args)`` job in a pool of ``workers`` processes; the writers return
    seconds of corpus audio, summed."""
    bar = Progress(len(jobs), "make-corpus", unit="file", quiet=not progress)
    total = 0.0
    if workers <= 1:
        results = map(_call, jobs)
        pool = None
    else:
        # fork: the workers only run numpy/scipy, and fork does not re-import __main__.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers)
        results = pool.imap_unordered(_call, jobs, chunksize=4)
    try:
        for seconds in results:
            total += seconds
            bar.update()
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    return total


def make_corpus(out_dir: str | os.PathLike, n_train_speakers: int = 500,
                n_test_speakers: int = 40, utts_per_speaker: int = 8, seed: int = 0,
                min_seconds: float = 2.0, max_seconds: float = 4.0,
                workers: int | None = None, progress: bool = False,
                augment_sets: bool | dict[str, int] = True) -> CorpusInfo:
    """Generate the synthetic corpus (see the module docstring for the layout).

    Parameters
    ----------
    out_dir : str or PathLike
        Created if missing; files of an earlier corpus there are replaced.
    n_train_speakers, n_test_speakers : int
        Training and held-out speakers (the trial list uses only the held-out ones).
    utts_per_speaker : int
        The defaults (500 + 40 speakers x 8) are the mini recipe's corpus: a speaker embedding
        generalises from the number of voices, and 500 x 8 trains to half the EER of 200 x 20
        in the same time.
    seed : int
        Same seed, same files (byte for byte), whatever ``workers`` is.
    min_seconds, max_seconds : float
        Utterance lengths are uniform in this range.
    workers : int, optional
        Processes; defaults to the CPUs available (at most 8). 1 runs in this process.
    progress : bool
        Show progress (:class:`r2n_audio.progress.Progress`: a bar on a terminal, a line
        every few seconds in a log).
    augment_sets : bool or dict
        Also write ``musan/`` and ``rirs/``: synthetic noise, music, babble and room impulse
        responses for training-time augmentation (:mod:`r2n_audio.data.synthetic.noises`);
        a dict gives the number of files per kind (``noise``, ``music``, ``speech``, ``rir``).

    Returns
    -------
    CorpusInfo
    """
    _check(n_train_speakers, n_test_speakers, utts_per_speaker, min_seconds, max_seconds)
    start = time.perf_counter()
    out = Path(out_dir)
    groups = {_TRAIN: n_train_speakers, _TEST: n_test_speakers}
    keys: dict[int, list[str]] = {_TRAIN: [], _TEST: []}
    jobs = []
    for group, count in groups.items():
        for i in range(count):
            for u in range(utts_per_speaker):
                key = f"{_PREFIX[group]}{i + 1:04d}/u{u + 1:04d}"
                keys[group].append(key)
                jobs.append((_write_utterance, (out / "wav" / f"{key}.wav", seed, group, i, u,
                                                min_seconds, max_seconds)))
    n_utterances = len(jobs)
    if augment_sets:
        counts = augment_sets if isinstance(augment_sets, dict) else None
        jobs += [(write_augmentation_file, job) for job in augmentation_jobs(out, seed, counts)]
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), 8)
    audio_seconds = _run_jobs(jobs, max(1, min(workers, len(jobs) // 8)), progress)
    # Durations from the headers just written, once, so that readers never need them.
    seconds = {k: audio_duration(out / "wav" / f"{k}.wav") for k in keys[_TRAIN] + keys[_TEST]}
    _write_data_dir(out, keys[_TRAIN] + keys[_TEST], "", seconds)
    _write_data_dir(out / "train", keys[_TRAIN], "../", seconds)
    _write_data_dir(out / "test", keys[_TEST], "../", seconds)
    trials = make_trials(spk2utt_from_utt2spk({k: k.split("/")[0] for k in keys[_TEST]}), seed)
    write_trials(out / "trials.txt", trials)
    info = CorpusInfo(out, n_train_speakers, n_test_speakers, n_utterances, len(trials),
                      round(audio_seconds, 2), round(time.perf_counter() - start, 2))
    _write_json(out, info, seed, utts_per_speaker, min_seconds, max_seconds, workers, groups)
    return info


def _write_json(out: Path, info: CorpusInfo, seed: int, utts: int, min_s: float, max_s: float,
                workers: int, groups: dict[int, int]) -> None:
    speakers = {f"{_PREFIX[g]}{i + 1:04d}": speaker_voice(seed, g, i).summary()
                for g, count in groups.items() for i in range(count)}
    meta = {
        "generator": "r2n_audio.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
        "sample_rate": SAMPLE_RATE, "n_train_speakers": info.n_train_speakers,
        "n_test_speakers": info.n_test_speakers, "utts_per_speaker": utts,
        "min_seconds": min_s, "max_seconds": max_s, "n_utterances": info.n_utterances,
        "n_trials": info.n_trials, "audio_seconds": info.audio_seconds,
        "generation_seconds": info.seconds, "workers": workers, "speakers": speakers,
    }
    atomic_write_text(out / "corpus.json", json.dumps(meta, indent=1) + "\n")
