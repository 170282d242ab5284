"""Kaldi-style data files and trial lists: round trips, hand-written files, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from r2n_audio.data.manifests import (
    Trials, read_spk2utt, read_trials, read_utt2spk, read_wav_scp, spk2utt_from_utt2spk,
    utterance_key, write_spk2utt, write_trials, write_utt2spk, write_wav_scp)
from r2n_audio.errors import DataFormatError


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_wav_scp_resolves_relative_paths_and_keeps_spaces(tmp_path):
    path = _write(tmp_path, "wav.scp", "u1 wav/a.wav\n\nu2 /abs/b c.flac\n")
    assert read_wav_scp(path) == {"u1": str(tmp_path / "wav/a.wav"), "u2": "/abs/b c.flac"}


def test_wav_scp_round_trip_sorted(tmp_path):
    mapping = {"b": "/x/b.wav", "a": "/x/a.wav"}
    write_wav_scp(tmp_path / "wav.scp", mapping)
    assert (tmp_path / "wav.scp").read_text() == "a /x/a.wav\nb /x/b.wav\n"
    assert read_wav_scp(tmp_path / "wav.scp") == mapping


def test_utt2spk_spk2utt_round_trip(tmp_path):
    utt2spk = {"s2/u1": "s2", "s1/u2": "s1", "s1/u1": "s1"}
    write_utt2spk(tmp_path / "utt2spk", utt2spk)
    assert read_utt2spk(tmp_path / "utt2spk") == utt2spk
    spk2utt = spk2utt_from_utt2spk(utt2spk)
    assert spk2utt == {"s1": ["s1/u1", "s1/u2"], "s2": ["s2/u1"]}
    write_spk2utt(tmp_path / "spk2utt", spk2utt)
    assert (tmp_path / "spk2utt").read_text() == "s1 s1/u1 s1/u2\ns2 s2/u1\n"
    assert read_spk2utt(tmp_path / "spk2utt") == spk2utt


@pytest.mark.parametrize("reader,text,line,problem", [
    (read_wav_scp, "u1 a.wav\nu1 b.wav\n", 2, "duplicate key 'u1' \\(first on line 1\\)"),
    (read_wav_scp, "u1 a.wav\nu2\n", 2, "expected"),
    (read_wav_scp, "u1 sox a.wav -t wav - |\n", 1, "piped"),
    (read_utt2spk, "u1 s1\nu2 s1 extra\n", 2, "got 3 fields"),
    (read_utt2spk, "u1 s1\n\nu1 s2\n", 3, "duplicate"),
    (read_spk2utt, "s1\n", 1, "expected"),
])
def test_malformed_lines_name_file_and_line(tmp_path, reader, text, line, problem):
    path = _write(tmp_path, "f", text)
    with pytest.raises(DataFormatError, match=problem) as info:
        reader(path)
    assert info.value.line == line and str(info.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize("reader", [read_wav_scp, read_utt2spk, read_spk2utt, read_trials])
def test_missing_and_empty_files(tmp_path, reader):
    with pytest.raises(DataFormatError, match="not found"):
        reader(tmp_path / "nope")
    with pytest.raises(DataFormatError, match="empty"):
        reader(_write(tmp_path, "blank", "\n  \n"))


def test_writers_refuse_bad_keys(tmp_path):
    with pytest.raises(ValueError):
        write_utt2spk(tmp_path / "u", {"a b": "s"})
    with pytest.raises(ValueError):
        write_spk2utt(tmp_path / "s", {"s": []})


def test_utterance_key():
    assert utterance_key("id10270/x6uY/00001.wav") == "id10270/x6uY/00001"
    assert utterance_key("a/b.FLAC") == "a/b"
    assert utterance_key("a\\b.ogg") == "a/b"
    assert utterance_key("a/b.c") == "a/b.c"


def test_voxceleb_trials(tmp_path):
    path = _write(tmp_path, "veri.txt", "1 id1/a/1.wav id1/b/2.wav\n0 id1/a/1.wav id2/c/3.wav\n")
    trials = read_trials(path)
    assert trials.enroll == ["id1/a/1", "id1/a/1"] and trials.test == ["id1/b/2", "id2/c/3"]
    assert trials.labels.dtype == np.int8 and trials.labels.tolist() == [1, 0]
    assert trials.labelled and trials.keys() == ["id1/a/1", "id1/b/2", "id2/c/3"]


def test_kaldi_trials_and_line_numbers(tmp_path):
    trials = read_trials(_write(tmp_path, "trials", "a b target\n\nc d nontarget\n"))
    assert (trials.enroll, trials.test, trials.labels.tolist()) == (["a", "c"], ["b", "d"],
                                                                    [1, 0])
    assert trials.lines.tolist() == [1, 3]


def test_unlabelled_trials(tmp_path):
    trials = read_trials(_write(tmp_path, "t", "a.wav b.wav\nc d\n"))
    assert trials.labels.tolist() == [-1, -1] and not trials.labelled
    with pytest.raises(ValueError, match="unlabelled"):
        write_trials(tmp_path / "out", trials)


@pytest.mark.parametrize("style", ["kaldi", "voxceleb"])
def test_trials_round_trip(tmp_path, style):
    trials = Trials(["a/1", "a/1", "b/2"], ["b/2", "c/3", "c/3"], np.array([1, 0, 0]))
    write_trials(tmp_path / "t", trials, style=style)
    back = read_trials(tmp_path / "t")
    assert (back.enroll, back.test, back.labels.tolist()) == (trials.enroll, trials.test,
                                                              [1, 0, 0])


@pytest.mark.parametrize("text,line,problem", [
    ("a b target\na b nontarget\n", 2, "duplicate trial 'a b' \\(first on line 1\\)"),
    ("1 a.wav b.wav\n2 a.wav c.wav\n", 2, "unknown label '2'"),
    ("a b target\nc d maybe\n", 2, "unknown label 'maybe'"),
    ("a b target\nc d\n", 2, "expected 3 fields"),
    ("1 a b c\n", 1, "cannot tell the trial format"),
    ("a b maybe\n", 1, "cannot tell"),
])
def test_bad_trials(tmp_path, text, line, problem):
    path = _write(tmp_path, "trials.txt", text)
    with pytest.raises(DataFormatError, match=problem) as info:
        read_trials(path)
    assert str(info.value).startswith(f"{path}:{line}:")


def test_trials_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        Trials(["a"], ["b", "c"], np.array([1, 0]))


def test_a_byte_order_mark_is_not_part_of_the_first_key(tmp_path):
    bom = "\ufeff"
    assert list(read_wav_scp(_write(tmp_path, "wav.scp", f"{bom}u1 a.wav\n"))) == ["u1"]
    assert read_utt2spk(_write(tmp_path, "utt2spk", f"{bom}u1 s1\n")) == {"u1": "s1"}
    assert read_spk2utt(_write(tmp_path, "spk2utt", f"{bom}s1 u1 u2\n")) == {"s1": ["u1", "u2"]}
    vox = read_trials(_write(tmp_path, "vox.txt", f"{bom}1 a/1.wav b/2.wav\n"))
    assert vox.enroll == ["a/1"] and vox.labels.tolist() == [1]  # the label '1', not '\ufeff1'
    kaldi = read_trials(_write(tmp_path, "kaldi.txt", f"{bom}a b target\n"))
    assert kaldi.enroll == ["a"]
