"""``r2n-audio make-corpus``: writes the corpus, prints counts, time and the baseline."""

from __future__ import annotations

import re

import pytest

from r2n_audio.cli import main
from r2n_audio.data.manifests import read_utt2spk


def test_make_corpus_prints_time_and_baseline(tmp_path, capsys):
    out = tmp_path / "corpus"
    rc = main(["make-corpus", str(out), "--speakers", "3", "--test-speakers", "2", "--utts",
               "3", "--min-seconds", "0.5", "--max-seconds", "1.0", "--workers", "1",
               "--baseline", "--no-augment-sets"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert re.search(r"made 15 utterances .* of 3 training \+ 2 held-out speakers in "
                     r"\d+\.\d s", printed.out)
    assert re.search(r"baseline EER .*: \d+\.\d\d%", printed.out)
    assert printed.err == ""  # not a terminal, and shorter than one progress line's interval
    assert len(set(read_utt2spk(out / "train" / "utt2spk").values())) == 3
    assert (out / "trials.txt").is_file()
    assert "augmentation" not in printed.out and not (out / "musan").exists()


def test_quiet_has_no_progress_bar(tmp_path, capsys):
    rc = main(["make-corpus", str(tmp_path), "--speakers", "0", "--test-speakers", "2",
               "--utts", "2", "--min-seconds", "0.5", "--max-seconds", "0.5", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    assert f"augmentation: {tmp_path / 'musan'}" in printed.out  # written by default
    assert len(list((tmp_path / "rirs").glob("*.wav"))) == 200


def test_bad_lengths_are_one_line_errors(tmp_path, capsys):
    rc = main(["make-corpus", str(tmp_path), "--min-seconds", "3", "--max-seconds", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "min_seconds" in err and len(err.strip().splitlines()) == 1


def test_bad_counts_are_usage_errors(tmp_path, capsys):
    assert main(["make-corpus", str(tmp_path), "--test-speakers", "1"]) == 2
    assert ">= 2" in capsys.readouterr().err


_SMALL = ["--speakers", "0", "--test-speakers", "2", "--utts", "2", "--min-seconds", "0.5",
          "--max-seconds", "0.5", "--no-augment-sets", "--quiet", "--workers", "1"]


def test_a_folder_that_is_not_a_corpus_is_refused_unless_overwrite(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    mine = {"wav.scp": "u1 /audio/u1.wav\n", "utt2spk": "u1 s1\n", "trials.txt": "u1 u2 target\n"}
    for name, text in mine.items():
        (data / name).write_text(text)
    assert main(["make-corpus", str(data), *_SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {data}: the folder is not empty" in err[0]
    assert "--overwrite" in err[0]
    assert {name: (data / name).read_text() for name in mine} == mine
    assert sorted(p.name for p in data.iterdir()) == sorted(mine)
    assert main(["make-corpus", str(data), *_SMALL, "--overwrite"]) == 0
    assert (data / "wav.scp").read_text() != mine["wav.scp"]


def test_an_earlier_corpus_or_an_empty_folder_is_accepted(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["make-corpus", str(tmp_path / "empty"), *_SMALL]) == 0
    assert main(["make-corpus", str(tmp_path / "empty"), *_SMALL, "--seed", "3"]) == 0


@pytest.mark.parametrize("option, value, message", [
    ("--seed", "-1", "must be >= 0, got -1"),
    ("--max-seconds", "inf", "must be a finite number > 0, got 'inf'"),
    ("--min-seconds", "nan", "must be a finite number > 0, got 'nan'"),
    ("--utts", "two", "must be an integer, got 'two'"),
])
def test_bad_values_are_usage_errors(tmp_path, capsys, option, value, message):
    assert main(["make-corpus", str(tmp_path / "c"), option, value]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "c").exists()


def test_an_output_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["make-corpus", str(tmp_path / "file" / "corpus"), *_SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and err[0].endswith("Not a directory")
