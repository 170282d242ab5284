"""The conversation set: seeded bytes, held-out speakers, turn-taking, overlap, references."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from r2n_audio.cli import main
from r2n_audio.data.synthetic.conversations import make_conversations
from r2n_audio.diarization.rttm import read_rttm


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_bytes_whatever_the_workers(tmp_path, conversations):
    make_conversations(tmp_path, n_conversations=2, seconds=12.0, min_speakers=2,
                       max_speakers=3, workers=2)
    assert _digest(tmp_path) == _digest(conversations)
    assert len(_digest(conversations)) == 2 + 2 + 3  # wav, rttm, wav.scp ref.rttm json


def test_turns_speakers_and_audio(conversations):
    meta = json.loads((conversations / "conversations.json").read_text())
    assert meta["overlap_share"] == 0.0
    for key, n_speakers in (("conv0001", 2), ("conv0002", 3)):
        turns = read_rttm(conversations / "rttm" / f"{key}.rttm", file_id=key)[key]
        speakers = {t.speaker for t in turns}
        assert len(speakers) == n_speakers
        assert all(s.startswith("tst") and int(s[3:]) <= 40 for s in speakers)
        assert all(a.speaker != b.speaker for a, b in zip(turns, turns[1:]))  # turn-taking
        assert all(b.start > a.end for a, b in zip(turns, turns[1:]))  # pauses, no overlap
        audio, rate = sf.read(conversations / "wav" / f"{key}.wav")
        assert rate == 16000 and turns[-1].end <= len(audio) / rate
        assert turns[-1].end >= 12.0
        # speech inside turns is louder than the pauses between them
        inside = np.zeros(len(audio), bool)
        for t in turns:
            inside[int(t.start * rate):int(t.end * rate)] = True
        assert np.sqrt(np.mean(audio[inside] ** 2)) > 3 * np.sqrt(np.mean(audio[~inside] ** 2))
    ref = read_rttm(conversations / "ref.rttm")
    assert sorted(ref) == ["conv0001", "conv0002"]


def test_overlap_share_is_close_to_the_target(tmp_path):
    info = make_conversations(tmp_path, n_conversations=1, seconds=40.0, overlap=0.2, workers=1)
    assert 0.15 <= info.overlap_share <= 0.3
    turns = read_rttm(tmp_path / "rttm" / "conv0001.rttm")["conv0001"]
    assert any(b.start < a.end for a, b in zip(turns, turns[1:]))


def test_command_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["make-conversations", str(tmp_path), "--conversations", "1",
                 "--seconds", "6", "--quiet"]) == 2
    assert "holds no earlier conversation set" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    out = tmp_path / "set"
    assert main(["make-conversations", str(out), "--conversations", "1", "--seconds", "6",
                 "--quiet", "--workers", "1"]) == 0
    assert "made 1 conversations" in capsys.readouterr().out
    assert main(["make-conversations", str(out), "--conversations", "1", "--seconds", "6",
                 "--overlap", "0.9", "--quiet"]) == 2
