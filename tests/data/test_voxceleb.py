"""VoxCeleb preparation on a fake download tree with the official layout and file formats."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from r2n_audio.data.manifests import read_spk2utt, read_trials, read_utt2spk, read_wav_scp
from r2n_audio.data.voxceleb import prepare_voxceleb, scan_voxceleb
from r2n_audio.errors import DataFormatError, R2NError

VOX1 = ["id10001/vidA/00001", "id10001/vidA/00002", "id10001/vidB/00001",
        "id10002/vidC/00001", "id10002/vidC/00002"]
VOX2 = ["id00012/xyz/00001", "id00012/xyz/00002", "id00034/abc/00001"]

# A stand-in for ffmpeg: reads "-i SRC ... OUT", writes 0.25 s of 16 kHz mono PCM_16 to OUT
# with the stdlib, fails on sources named "broken*", and logs each call.
FAKE_FFMPEG = """#!{python}
import sys, wave
args = sys.argv[1:]
src, out = args[args.index("-i") + 1], args[-1]
assert args[args.index("-ar") + 1] == "16000" and args[args.index("-ac") + 1] == "1"
with open({log!r}, "a") as log:
    log.write(src + "\\n")
if "broken" in src:
    sys.stderr.write("Invalid data found when processing input\\n")
    sys.exit(1)
with wave.open(out, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    w.writeframes(b"\\x10\\x00" * 4000)
"""


def _tree(root: Path, keys: list[str], ext: str) -> None:
    for key in keys:
        path = root / f"{key}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".wav":
            sf.write(path, np.full(1600, 0.01, np.float32), 16000, subtype="PCM_16")
        else:
            path.write_bytes(b"\x00\x00\x00\x20ftypM4A fake aac payload")


@pytest.fixture
def vox1(tmp_path):
    root = tmp_path / "vox1"
    _tree(root / "wav", VOX1, ".wav")
    (root / "wav" / "README.txt").write_text("not a speaker")
    (root / "wav" / "id10001" / "vidA" / "notes.txt").write_text("ignored")
    return root


@pytest.fixture
def trials_dir(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "veri_test2.txt").write_text(
        "1 id10001/vidA/00001.wav id10001/vidB/00001.wav\n"
        "0 id10001/vidA/00002.wav id10002/vidC/00001.wav\n")
    (folder / "list_test_hard2.txt").write_text(
        "1 id10002/vidC/00001.wav id10002/vidC/00002.wav\n"
        "0 id10001/vidA/00001.wav id10999/gone/00001.wav\n")
    return folder


@pytest.fixture
def ffmpeg(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "ffmpeg.log"
    script = bin_dir / "ffmpeg"
    script.write_text(FAKE_FFMPEG.format(python=sys.executable, log=str(log)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return log


def test_scan_keys_and_ignores_other_files(vox1):
    found = scan_voxceleb(vox1 / "wav")
    assert list(found) == VOX1
    assert all(p.is_absolute() and p.suffix == ".wav" for p in found.values())


def test_vox1_data_dir_and_kaldi_trials(tmp_path, vox1, trials_dir):
    out = tmp_path / "out"
    report = prepare_voxceleb(out, vox1=vox1, trials_dir=trials_dir)
    assert report.utterances == {"vox1": 5} and report.speakers == {"vox1": 2}
    wav_scp = read_wav_scp(out / "vox1" / "wav.scp")
    assert list(wav_scp) == VOX1
    assert wav_scp["id10002/vidC/00001"] == str((vox1 / "wav/id10002/vidC/00001.wav").resolve())
    assert read_utt2spk(out / "vox1" / "utt2spk") == {k: k[:7] for k in VOX1}
    assert read_spk2utt(out / "vox1" / "spk2utt")["id10001"] == VOX1[:3]
    assert (out / "trials" / "vox1_O_cleaned.txt").read_text() == (
        "id10001/vidA/00001 id10001/vidB/00001 target\n"
        "id10001/vidA/00002 id10002/vidC/00001 nontarget\n")
    assert read_trials(out / "trials" / "vox1_O_cleaned.txt").labels.tolist() == [1, 0]
    # Vox1-H names an utterance that is not in the audio: reported with its line, not written
    assert report.trials == {"vox1_O_cleaned.txt": 2}
    assert len(report.failed) == 1 and "list_test_hard2.txt:2" in report.failed[0]
    assert "id10999/gone/00001" in report.failed[0]
    assert not (out / "trials" / "vox1_H_cleaned.txt").exists()


def test_vox1_dev_and_test_unpacked_side_by_side(tmp_path):
    _tree(tmp_path / "v1" / "vox1_dev_wav" / "wav", VOX1[:3], ".wav")
    _tree(tmp_path / "v1" / "vox1_test_wav" / "wav", VOX1[3:], ".wav")
    report = prepare_voxceleb(tmp_path / "out", vox1=tmp_path / "v1")
    assert list(read_wav_scp(tmp_path / "out" / "vox1" / "wav.scp")) == VOX1
    assert report.failed == []


def test_vox2_m4a_converted_with_ffmpeg_once(tmp_path, ffmpeg):
    vox2 = tmp_path / "vox2"
    _tree(vox2 / "dev" / "aac", VOX2, ".m4a")
    report = prepare_voxceleb(tmp_path / "out", vox2=vox2, jobs=2)
    assert report.failed == [] and report.utterances == {"vox2_dev": 3}
    assert report.speakers == {"vox2_dev": 2}
    wav_scp = read_wav_scp(tmp_path / "out" / "vox2_dev" / "wav.scp")
    assert list(wav_scp) == VOX2
    for key, path in wav_scp.items():
        assert path == str((vox2 / "dev" / "wav" / f"{key}.wav").resolve())
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 4000)
    assert len(ffmpeg.read_text().splitlines()) == 3
    prepare_voxceleb(tmp_path / "out", vox2=vox2)  # already converted: no new ffmpeg call
    assert len(ffmpeg.read_text().splitlines()) == 3


def test_failed_conversion_is_reported_and_leaves_no_file(tmp_path, ffmpeg):
    vox2 = tmp_path / "vox2"
    _tree(vox2 / "aac", VOX2, ".m4a")
    broken = vox2 / "aac" / "id00034" / "abc" / "00001.m4a"
    broken.rename(broken.with_name("broken.m4a"))
    report = prepare_voxceleb(tmp_path / "out", vox2=vox2)
    assert len(report.failed) == 1 and "broken.m4a" in report.failed[0]
    assert "Invalid data" in report.failed[0]
    assert list(read_wav_scp(tmp_path / "out" / "vox2_dev" / "wav.scp")) == VOX2[:2]
    assert sorted(p.name for p in (vox2 / "wav").rglob("*")
                  if p.is_file()) == ["00001.wav", "00002.wav"]


def test_m4a_without_ffmpeg_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    _tree(tmp_path / "vox2" / "aac", VOX2, ".m4a")
    with pytest.raises(R2NError, match=r"3 m4a files .* ffmpeg is not on the PATH.*apt-get"):
        prepare_voxceleb(tmp_path / "out", vox2=tmp_path / "vox2")


def test_already_converted_vox2_needs_no_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    _tree(tmp_path / "vox2" / "wav", VOX2, ".wav")
    report = prepare_voxceleb(tmp_path / "out", vox2=tmp_path / "vox2")
    assert report.utterances == {"vox2_dev": 3} and report.failed == []


def test_input_errors_name_the_path(tmp_path, vox1, trials_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match=str(empty)):
        prepare_voxceleb(tmp_path / "out", vox1=empty)
    with pytest.raises(DataFormatError, match=str(empty)):
        prepare_voxceleb(tmp_path / "out", vox2=empty)
    with pytest.raises(DataFormatError, match="not a folder"):
        prepare_voxceleb(tmp_path / "out", vox1=tmp_path / "missing")
    with pytest.raises(DataFormatError, match="veri_test2.txt"):
        prepare_voxceleb(tmp_path / "out", vox1=vox1, trials_dir=empty)
    with pytest.raises(R2NError, match="--vox1"):
        prepare_voxceleb(tmp_path / "out")
    with pytest.raises(R2NError, match="--vox1"):
        prepare_voxceleb(tmp_path / "out", vox2=vox1, trials_dir=trials_dir)


def test_vox2_given_as_the_tree_itself(tmp_path, ffmpeg):
    _tree(tmp_path / "converted", VOX2, ".wav")
    report = prepare_voxceleb(tmp_path / "out1", vox2=tmp_path / "converted")
    assert report.utterances == {"vox2_dev": 3}
    _tree(tmp_path / "dl" / "aac", VOX2, ".m4a")
    report = prepare_voxceleb(tmp_path / "out2", vox2=tmp_path / "dl" / "aac")
    assert report.utterances == {"vox2_dev": 3} and report.failed == []
    assert len(list((tmp_path / "dl" / "wav").rglob("*.wav"))) == 3
