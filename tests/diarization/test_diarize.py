"""End to end: ``r2n-audio diarize`` and ``Diarizer`` on a small conversation set, tiny model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from r2n_audio.cli import main
from r2n_audio.diarization.der import DERScorer
from r2n_audio.diarization.pipeline import Diarizer
from r2n_audio.diarization.rttm import read_rttm, reference_turns
from r2n_audio.errors import AudioError

pytest.importorskip("pyannote.metrics")


def _diarize(*args):
    return main(["diarize", *map(str, args), "--device", "cpu"])


def test_cli_writes_rttms_scores_and_resumes(tmp_path, conversations, tiny_bundle, capsys):
    out = tmp_path / "hyp"
    assert _diarize(conversations / "wav.scp", "--model", tiny_bundle, "-o", out,
                    "--reference", conversations / "rttm", "--quiet") == 0
    text = capsys.readouterr().out
    assert "overall" in text and "collar 0.25 s on each side" in text and "2 done" in text
    rttms = {p.name: p.read_text() for p in out.iterdir()}
    assert sorted(rttms) == ["conv0001.rttm", "conv0002.rttm"]
    # the printed figures are pyannote.metrics' on the written files
    scorer = DERScorer()
    for key in ("conv0001", "conv0002"):
        hyp = read_rttm(out / f"{key}.rttm", file_id=key)[key]
        assert hyp, "no turns"
        scorer.add(key, reference_turns(conversations / "rttm", key), hyp,
                   sf.info(conversations / "wav" / f"{key}.wav").duration)
    assert f"{100 * scorer.total()['der']:.2f}" in text.split("overall")[1].split()[0]
    # rerun: nothing redone, same files, same numbers, as JSON
    assert _diarize(conversations / "wav.scp", "--model", tiny_bundle, "-o", out,
                    "--reference", conversations / "ref.rttm", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] == 2 and report["done"] == 0
    assert report["total"]["der"] == pytest.approx(scorer.total()["der"])
    assert {p.name: p.read_text() for p in out.iterdir()} == rttms


def test_oracle_vad_has_no_missed_speech_or_false_alarm(tmp_path, conversations, tiny_bundle,
                                                        capsys):
    assert _diarize(conversations / "wav.scp", "--model", tiny_bundle, "-o", tmp_path,
                    "--reference", conversations / "rttm", "--vad", "oracle",
                    "--num-speakers", "2", "--clustering", "ahc", "--json") == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert total["missed"] < 0.02 and total["false_alarm"] < 0.02


def test_api_returns_turns_and_an_annotation(conversations, tiny_bundle):
    diarizer = Diarizer.from_pretrained(tiny_bundle, device="cpu", vad="energy")
    wave, _ = sf.read(conversations / "wav" / "conv0001.wav", dtype="float32")
    turns = diarizer(wave, num_speakers=2)
    assert turns and all(isinstance(t.start, float) and t.end > t.start for t in turns)
    assert set(turns.speakers) <= {"spk1", "spk2"}
    annotation = turns.annotation
    assert len(list(annotation.itertracks())) == len(turns)
    assert turns == diarizer(conversations / "wav" / "conv0001.wav", num_speakers=2)


def test_one_speaker_and_no_speech(tmp_path, conversations, tiny_bundle):
    diarizer = Diarizer.from_pretrained(tiny_bundle, device="cpu")
    wave, _ = sf.read(conversations / "wav" / "conv0001.wav", dtype="float32")
    first = reference_turns(conversations / "rttm", "conv0001")[0]
    alone = wave[int(first.start * 16000):int(first.end * 16000)]
    turns = diarizer(np.tile(alone, 3), num_speakers=1)
    assert turns.speakers == ["spk1"]
    silent = diarizer(np.zeros(16000 * 5, np.float32))
    assert list(silent) == [] and silent.note == "no speech found"
    with pytest.raises(AudioError, match="shorter than one window"):
        diarizer(np.zeros(16000, np.float32))


def test_bad_inputs_one_line_nothing_lost(tmp_path, conversations, tiny_bundle, capsys):
    data = tmp_path / "data"
    shutil.copytree(conversations / "wav", data)
    sf.write(data / "short.wav", np.zeros(8000), 16000)
    sf.write(data / "silence.wav", np.zeros(16000 * 3), 16000)
    out = tmp_path / "hyp"
    assert _diarize(data, "--model", tiny_bundle, "-o", out, "--num-speakers", "2") == 1
    err = capsys.readouterr().err
    assert "skipped short: " in err and "shorter than one window" in err
    assert "silence: no speech found (empty RTTM written)" in err
    assert sorted(p.name for p in out.iterdir()) == ["conv0001.rttm", "conv0002.rttm",
                                                     "silence.rttm"]
    assert (out / "silence.rttm").read_text() == ""
    # more speakers than windows: that file is skipped with its reason, the others kept
    assert _diarize(data / "conv0001.wav", "--model", tiny_bundle, "-o", tmp_path / "many",
                    "--num-speakers", "500") == 1
    assert "--num-speakers 500 is more than the" in capsys.readouterr().err


@pytest.mark.parametrize("bad,message", [
    ("SPEAKER conv0009 1 0.0 1.0 <NA> <NA> x <NA> <NA>\n", "names file 'conv0009'"),
    ("SPEAKER conv0001 1 3.0 -1.0 <NA> <NA> x <NA> <NA>\n", "duration -1.0 is negative"),
])
def test_bad_reference_stops_before_writing(tmp_path, conversations, tiny_bundle, capsys,
                                            bad, message):
    refs = tmp_path / "refs"
    shutil.copytree(conversations / "rttm", refs)
    with open(refs / "conv0001.rttm", "a") as f:
        f.write(bad)
    line = len((refs / "conv0001.rttm").read_text().splitlines())
    out = tmp_path / "hyp"
    assert _diarize(conversations / "wav.scp", "--model", tiny_bundle, "-o", out,
                    "--reference", refs) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"conv0001.rttm:{line}: " in err and message in err
    assert not out.exists()


def test_output_may_not_replace_the_references(conversations, tiny_bundle, capsys):
    before = (conversations / "rttm" / "conv0001.rttm").read_text()
    assert _diarize(conversations / "wav.scp", "--model", tiny_bundle,
                    "-o", conversations / "rttm", "--reference", conversations / "rttm") == 2
    assert "is the --reference folder" in capsys.readouterr().err
    assert (conversations / "rttm" / "conv0001.rttm").read_text() == before
    assert _diarize(conversations / "wav.scp", "--model", tiny_bundle, "-o", "x",
                    "--vad", "oracle") == 2
    assert "--vad oracle" in capsys.readouterr().err
