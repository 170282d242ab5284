"""``r2n-audio prepare voxceleb`` on a fake VoxCeleb1 tree with official trial lists."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from r2n_audio.cli import main
from r2n_audio.data.manifests import read_trials


def _vox1(root):
    for key in ("id10001/vidA/00001", "id10001/vidB/00001", "id10002/vidC/00001"):
        path = root / "wav" / f"{key}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(800, np.float32), 16000, subtype="PCM_16")
    return root


def test_prepare_vox1_with_trials(tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "veri_test2.txt").write_text("1 id10001/vidA/00001.wav id10001/vidB/00001.wav\n"
                                         "0 id10001/vidA/00001.wav id10002/vidC/00001.wav\n")
    out = tmp_path / "data"
    rc = main(["prepare", "voxceleb", "--vox1", str(_vox1(tmp_path / "vox1")), "--out",
               str(out), "--trials-dir", str(lists), "--quiet"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "vox1: 3 utterances, 2 speakers" in printed.out
    assert "vox1_O_cleaned.txt: 2 trials" in printed.out
    assert read_trials(out / "trials" / "vox1_O_cleaned.txt").labels.tolist() == [1, 0]


def test_some_lists_failed_exits_1(tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "veri_test2.txt").write_text("1 id10001/vidA/00001.wav id10001/vidB/00001.wav\n")
    (lists / "list_test_all2.txt").write_text("0 id10001/vidA/00001.wav id19999/x/00001.wav\n")
    rc = main(["prepare", "voxceleb", "--vox1", str(_vox1(tmp_path / "vox1")), "--out",
               str(tmp_path / "data"), "--trials-dir", str(lists), "--quiet"])
    printed = capsys.readouterr()
    assert rc == 1
    assert "vox1_O_cleaned.txt: 1 trials" in printed.out
    assert "list_test_all2.txt:1" in printed.err and "id19999/x/00001" in printed.err


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    rc = main(["prepare", "voxceleb", "--vox1", str(tmp_path / "nope"), "--out",
               str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err and len(err.strip().splitlines()) == 1
