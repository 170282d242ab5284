"""``r2n-audio make-corpus``: writes the corpus, prints counts, time and the baseline."""

from __future__ import annotations

import re

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
    assert "make-corpus" in printed.err  # the progress bar
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
