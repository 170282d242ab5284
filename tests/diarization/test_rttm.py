"""RTTM round trips and the reader's errors (file and line named)."""

from __future__ import annotations

import pytest

from r2n_audio.diarization.rttm import format_rttm, read_rttm, reference_turns, write_rttm
from r2n_audio.diarization.segments import Turn
from r2n_audio.errors import DataFormatError

TURNS = [Turn(0.5, 2.25, "alice"), Turn(2.0, 4.125, "bob"), Turn(5.0, 5.0, "alice")]


def test_round_trip(tmp_path):
    path = write_rttm(tmp_path / "sub" / "rec1.rttm", "rec1", TURNS)
    assert read_rttm(path) == {"rec1": TURNS}
    assert read_rttm(path, file_id="rec1") == {"rec1": TURNS}
    first = path.read_text().splitlines()[0]
    assert first == "SPEAKER rec1 1 0.500 1.750 <NA> <NA> alice <NA> <NA>"
    assert [p.name for p in path.parent.iterdir()] == ["rec1.rttm"]  # no temporary left


def test_pyannote_reads_what_we_write(tmp_path):
    rttm = pytest.importorskip("pyannote.database.util")
    path = write_rttm(tmp_path / "rec1.rttm", "rec1", TURNS[:2])
    annotation = rttm.load_rttm(path)["rec1"]
    assert sorted((round(s.start, 3), round(s.end, 3), label)
                  for s, _, label in annotation.itertracks(yield_label=True)) == \
        [(t.start, t.end, t.speaker) for t in TURNS[:2]]


def test_empty_and_comments(tmp_path):
    path = tmp_path / "a.rttm"
    path.write_text("# comment\n\nSPKR-INFO a 1 <NA> <NA> <NA> unknown x <NA>\n"
                    "SPEAKER a 1 1.0 2.0 <NA> <NA> x <NA> <NA>\n")
    assert read_rttm(path) == {"a": [Turn(1.0, 3.0, "x")]}
    write_rttm(tmp_path / "b.rttm", "b", [])
    assert read_rttm(tmp_path / "b.rttm", file_id="b") == {"b": []}


@pytest.mark.parametrize("line,message", [
    ("SPEAKER other 1 0.0 1.0 <NA> <NA> x <NA> <NA>", "names file 'other'"),
    ("SPEAKER a 1 1.0 -0.5 <NA> <NA> x <NA> <NA>", "duration -0.5 is negative"),
    ("SPEAKER a 1 -1.0 0.5 <NA> <NA> x <NA> <NA>", "onset -1.0 is negative"),
    ("SPEAKER a 1 abc 0.5 <NA> <NA> x <NA> <NA>", "onset 'abc' is not a number"),
    ("SPEAKER a 1 nan 0.5 <NA> <NA> x <NA> <NA>", "not finite"),
    ("SPEAKER a 1 0.0", "at least 8 fields"),
])
def test_reader_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "a.rttm"
    path.write_text("SPEAKER a 1 0.0 1.0 <NA> <NA> x <NA> <NA>\n" + line + "\n")
    with pytest.raises(DataFormatError, match=message) as info:
        read_rttm(path, file_id="a")
    assert str(info.value).startswith(f"{path}:2: ")


def test_reference_from_a_folder_or_one_file(tmp_path):
    write_rttm(tmp_path / "refs" / "a.rttm", "a", TURNS)
    assert reference_turns(tmp_path / "refs", "a") == TURNS
    with pytest.raises(DataFormatError, match="no reference RTTM for recording 'b'"):
        reference_turns(tmp_path / "refs", "b")
    (tmp_path / "all.rttm").write_text(format_rttm("a", TURNS) + format_rttm("b", TURNS[:1]))
    assert reference_turns(tmp_path / "all.rttm", "b") == TURNS[:1]
    assert reference_turns(tmp_path / "all.rttm", "c") == []


def test_file_ids_with_spaces_are_refused():
    with pytest.raises(ValueError, match="whitespace"):
        format_rttm("a b", TURNS)
