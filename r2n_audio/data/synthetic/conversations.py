"""``make_conversations``: multi-speaker recordings with reference RTTMs, for diarization.

Each conversation takes 2..6 of the corpus's **held-out** speakers (the voices of
``make_corpus(seed=...)``'s ``tst0001...``, never a training voice) and lets them take turns:

- a turn is ``speak`` of 1.5-6 s by the next speaker (never the one who just spoke), at that
  speaker's own level (0 to -6 dB: distances to the microphone); one microphone
  (``channel_gain``) records everyone, so the channel says nothing about who speaks;
- turns are separated by pauses of 0.2-1.0 s, except that a turn starts 0.5-1.5 s before the
  previous one ends whenever the overlapped share of the speech so far is below ``overlap``
  (so the share ends close to ``overlap``; the exact share is in ``conversations.json``);
- the mix gets stationary, babble or hum background noise at 15-30 dB SNR and then goes through
  the corpus's :func:`~r2n_audio.data.synthetic.channel.record` (room reverberation half the
  time, more noise, the noise floor and a recording level).

A reference turn runs from the first to the last active 10 ms frame of the dry speech
(frames within 35 dB of the speaker's active level), so leading and trailing silence of a turn
is not speech while the short pauses inside it are, as human annotators mark turns.

Layout under ``out_dir``::

    wav/conv0001.wav ...      16 kHz mono PCM_16
    rttm/conv0001.rttm ...    reference turns (file id = key, speakers tst0001...)
    wav.scp  ref.rttm         every conversation
    conversations.json        parameters and per-conversation speakers, speech, overlap

Conversation ``i`` is drawn from its own generator seeded by ``(seed, 3, i)``: the files are the
same byte for byte whatever the number of workers.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from r2n_audio.atomic import atomic_path, atomic_write_text
from r2n_audio.data.manifests import write_wav_scp
from r2n_audio.data.synthetic.channel import background_noise, channel_gain, record
from r2n_audio.data.synthetic.corpus import _TEST, _run_jobs, speaker_voice
from r2n_audio.data.synthetic.synth import SAMPLE_RATE, speak
from r2n_audio.diarization.rttm import format_rttm, write_rttm
from r2n_audio.diarization.segments import Turn
from r2n_audio.errors import R2NError

__all__ = ["ConversationsInfo", "make_conversations", "synthesize_conversation"]

_GROUP = 3  # seed-sequence group of the conversations (0/1 are speakers, 2 the trials)
_TURN_SECONDS = (1.5, 6.0)
_PAUSE_SECONDS = (0.2, 1.0)
_OVERLAP_SECONDS = (0.5, 1.5)
_SNR_DB = (15.0, 30.0)
_ACTIVE_DB = -35.0
_FRAME = SAMPLE_RATE // 100


@dataclass(frozen=True)
class ConversationsInfo:
    """What ``make_conversations`` wrote: folder, count, seconds of audio and of speech, and the
    overlapped share of the speech."""

    out_dir: Path
    n_conversations: int
    audio_seconds: float
    speech_seconds: float
    overlap_share: float


def _active_span(speech: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 10 ms frames within 35 dB of the active level (1.0)."""
    n = len(speech) // _FRAME * _FRAME
    level = np.sqrt(np.mean(speech[:n].reshape(-1, _FRAME) ** 2, axis=1))
    active = np.flatnonzero(level > 10.0 ** (_ACTIVE_DB / 20.0))
    if len(active) == 0:
        return 0, len(speech)
    return int(active[0] * _FRAME), int((active[-1] + 1) * _FRAME)


def _place_turns(rng: np.random.Generator, voices: list, seconds: float, overlap: float,
                 gain: np.ndarray) -> list[tuple[int, int, np.ndarray, int, int]]:
    """Turns as ``(speaker slot, first sample of the dry speech, dry speech, active span)``."""
    placed: list[tuple[int, int, np.ndarray, int, int]] = []
    end = int(rng.uniform(0.3, 1.0) * SAMPLE_RATE)  # where the last turn's speech ended
    spoken = overlapped = 0.0
    slot = -1
    while end < seconds * SAMPLE_RATE:
        slot = int(rng.choice([s for s in range(len(voices)) if s != slot]))
        n = int(rng.uniform(*_TURN_SECONDS) * SAMPLE_RATE)
        speech = speak(voices[slot], rng, n, channel_gain=gain)
        a, b = _active_span(speech)
        if placed and overlapped < overlap * spoken:
            room = 0.5 * min(placed[-1][4] - placed[-1][3], b - a)
            shift = -min(rng.uniform(*_OVERLAP_SECONDS) * SAMPLE_RATE, room)
            overlapped -= shift / SAMPLE_RATE
        else:
            shift = rng.uniform(*_PAUSE_SECONDS) * SAMPLE_RATE
        start = int(end + shift) - a
        placed.append((slot, start, speech, a, b))
        spoken += (b - a) / SAMPLE_RATE
        end = max(end, start + b)
    return placed


def synthesize_conversation(seed: int, index: int, n_speakers: int, n_test_speakers: int,
                            seconds: float, overlap: float) -> tuple[np.ndarray, list[Turn]]:
    """Conversation ``index``: audio (N,) float32 at 16 kHz and its reference turns."""
    rng = np.random.default_rng([seed, _GROUP, index])
    speakers = sorted(rng.choice(n_test_speakers, n_speakers, replace=False).tolist())
    gain = channel_gain(rng)
    levels = 10.0 ** (rng.uniform(-6.0, 0.0, len(speakers)) / 20.0)
    voices = [speaker_voice(seed, _TEST, s) for s in speakers]
    placed = _place_turns(rng, voices, seconds, overlap, gain)
    n = max(start + len(speech) for _, start, speech, _, _ in placed) + SAMPLE_RATE // 2
    mix = np.zeros(n)
    turns = []
    for slot, start, speech, a, b in placed:
        lo = max(0, start)
        mix[lo:start + len(speech)] += levels[slot] * speech[lo - start:]
        turns.append(Turn(round(max(0, start + a) / SAMPLE_RATE, 3),
                          round((start + b) / SAMPLE_RATE, 3), f"tst{speakers[slot] + 1:04d}"))
    mix += background_noise(rng, n) * 10.0 ** (-rng.uniform(*_SNR_DB) / 20.0)
    return record(mix, rng), turns


def _write_conversation(job: tuple) -> float:
    out, key, seed, index, n_speakers, n_test, seconds, overlap = job
    audio, turns = synthesize_conversation(seed, index, n_speakers, n_test, seconds, overlap)
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    with atomic_path(out / "wav" / f"{key}.wav") as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_rttm(out / "rttm" / f"{key}.rttm", key, turns)
    return len(audio) / SAMPLE_RATE


def _speech_and_overlap(turns: list[Turn]) -> tuple[float, float]:
    """Seconds of speech (union of turns) and of overlapped speech, on a 10 ms grid."""
    if not turns:
        return 0.0, 0.0
    count = np.zeros(int(max(t.end for t in turns) * 100) + 1, dtype=int)
    for t in turns:
        count[int(round(t.start * 100)):int(round(t.end * 100))] += 1
    return float((count > 0).sum()) / 100, float((count > 1).sum()) / 100


def make_conversations(out_dir: str | os.PathLike, n_conversations: int = 10, seed: int = 0,
                       n_test_speakers: int = 40, min_speakers: int = 2, max_speakers: int = 6,
                       seconds: float = 60.0, overlap: float = 0.0, workers: int | None = None,
                       progress: bool = False) -> ConversationsInfo:
    """Write a conversation set (see the module docstring for the layout).

    Parameters
    ----------
    out_dir : str or PathLike
    n_conversations : int
        Conversation ``i`` has ``min_speakers + i % (max_speakers - min_speakers + 1)`` speakers.
    seed, n_test_speakers : int
        The corpus whose held-out speakers talk (``make_corpus(seed=seed,
        n_test_speakers=n_test_speakers)``).
    seconds : float
        Turns are added until one ends after this time (recordings are a little longer).
    overlap : float
        Target share of the speech where two speakers talk at once (0 to 0.5).
    workers : int, optional
        Processes (default: the CPUs available, at most 8); the output does not depend on it.
    """
    if not 1 <= min_speakers <= max_speakers <= n_test_speakers or min_speakers < 2:
        raise R2NError(f"need 2 <= min speakers <= max speakers <= held-out speakers, got "
                       f"{min_speakers}, {max_speakers}, {n_test_speakers}")
    if not 0.0 <= overlap <= 0.5 or not seconds >= 5.0 or n_conversations < 1:
        raise R2NError(f"need 0 <= overlap <= 0.5, seconds >= 5 and >= 1 conversation, got "
                       f"{overlap}, {seconds}, {n_conversations}")
    out = Path(out_dir)
    keys = [f"conv{i + 1:04d}" for i in range(n_conversations)]
    counts = [min_speakers + i % (max_speakers - min_speakers + 1) for i in range(n_conversations)]
    jobs = [(_write_conversation, (out, key, seed, i, k, n_test_speakers, seconds, overlap))
            for i, (key, k) in enumerate(zip(keys, counts))]
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), 8)
    audio_seconds = _run_jobs(jobs, max(1, min(workers, len(jobs))), progress)
    write_wav_scp(out / "wav.scp", {k: f"wav/{k}.wav" for k in keys})
    from r2n_audio.diarization.rttm import read_rttm

    files, texts, speech, overlapped = {}, [], 0.0, 0.0
    for key, k in zip(keys, counts):
        turns = read_rttm(out / "rttm" / f"{key}.rttm", file_id=key)[key]
        texts.append(format_rttm(key, turns))
        s, o = _speech_and_overlap(turns)
        speech, overlapped = speech + s, overlapped + o
        files[key] = {"speakers": sorted({t.speaker for t in turns}), "turns": len(turns),
                      "speech_seconds": s, "overlap_seconds": o}
    atomic_write_text(out / "ref.rttm", "".join(texts))
    meta = {"generator": "r2n_audio.data.synthetic.conversations", "seed": seed,
            "n_test_speakers": n_test_speakers, "n_conversations": n_conversations,
            "min_speakers": min_speakers, "max_speakers": max_speakers, "seconds": seconds,
            "overlap": overlap, "overlap_share": round(overlapped / max(speech, 1e-9), 4),
            "conversations": files}
    atomic_write_text(out / "conversations.json", json.dumps(meta, indent=1) + "\n")
    return ConversationsInfo(out, n_conversations, round(audio_seconds, 2), round(speech, 2),
                             meta["overlap_share"])
