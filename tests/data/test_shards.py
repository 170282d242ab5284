"""``r2n-audio prepare shards``: contents against the data dir, WebDataset's own reader,
byte-identical reruns after a kill, and one-line errors for bad shards and durations."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from r2n_audio.cli import main
from r2n_audio.data.manifests import read_utt2dur, read_utt2spk, read_wav_scp
from r2n_audio.data.shards import iter_shard, read_shard_list, verify_shards, write_shards
from r2n_audio.errors import DataFormatError


def _shards(tiny_corpus: Path, out: Path, **kwargs) -> Path:
    write_shards(tiny_corpus / "train", out, **{"shard_size": 5, **kwargs})
    return out / "shards.txt"


def _tar_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_every_utterance_once_with_speaker_duration_and_samples(tiny_corpus, tmp_path, fmt):
    listing = _shards(tiny_corpus, tmp_path / "s", format=fmt)
    wavs = read_wav_scp(tiny_corpus / "train" / "wav.scp")
    speakers = read_utt2spk(tiny_corpus / "train" / "utt2spk")
    shards = read_shard_list(listing)
    assert shards.utterances == len(wavs) and len(shards.paths) == -(-len(wavs) // 5)
    assert shards.speakers == sorted(set(speakers.values()))
    seen = {}
    for path in shards.paths:
        for key, speaker, seconds, got_fmt, data in iter_shard(path):
            assert key not in seen and got_fmt == fmt
            reference, rate = sf.read(wavs[key], dtype="int16")  # lossless: same samples
            decoded, _ = sf.read(io.BytesIO(data), dtype="int16")
            np.testing.assert_array_equal(decoded, reference)
            assert speaker == speakers[key] and seconds == len(reference) / rate
            seen[key] = path
    assert sorted(seen) == sorted(wavs)
    # Shuffled: the first shard is not simply the first five keys.
    assert [k for k in sorted(seen) if seen[k] == shards.paths[0]] != sorted(wavs)[:5]


def test_webdataset_reads_the_shards(tiny_corpus, tmp_path):
    import webdataset as wds

    listing = _shards(tiny_corpus, tmp_path / "s")
    urls = [str(p) for p in read_shard_list(listing).paths]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    speakers = read_utt2spk(tiny_corpus / "train" / "utt2spk")
    assert sorted(s["json"]["key"] for s in samples) == sorted(speakers)
    assert all(s["json"]["speaker"] == speakers[s["json"]["key"]] for s in samples)
    assert all(s["__key__"] == s["json"]["key"] for s in samples)  # no dots to escape here


def test_deterministic_headers_and_parallel_jobs_give_the_same_bytes(tiny_corpus, tmp_path):
    _shards(tiny_corpus, tmp_path / "a", jobs=1)
    _shards(tiny_corpus, tmp_path / "b", jobs=2)
    assert _tar_bytes(tmp_path / "a") == _tar_bytes(tmp_path / "b")
    with tarfile.open(next((tmp_path / "a").glob("*.tar"))) as tar:
        member = tar.getmembers()[0]
        assert (member.mtime, member.uid, member.gid, member.uname) == (0, 0, 0, "")


def test_killed_run_reruns_to_the_same_shards(tiny_corpus, tmp_path):
    clean = tmp_path / "clean"
    _shards(tiny_corpus, clean)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-c", "from r2n_audio.cli import main; import sys; "
           "sys.exit(main(sys.argv[1:]))", "prepare", "shards", str(tiny_corpus / "train"),
           str(out), "--shard-size", "1", "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while len(list(out.glob("shard-*.tar"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "shards.txt").exists()  # the list comes last
    assert main(["prepare", "shards", str(tiny_corpus / "train"), str(out), "--shard-size", "1",
                 "--quiet"]) == 0
    shutil.rmtree(clean)
    _shards(tiny_corpus, clean, shard_size=1)
    assert _tar_bytes(out) == _tar_bytes(clean)
    assert (out / "shards.json").read_bytes() == (clean / "shards.json").read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_rerun_refuses_a_truncated_shard_under_its_final_name(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "s"
    _shards(tiny_corpus, out)
    shard = out / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    rc = main(["prepare", "shards", str(tiny_corpus / "train"), str(out), "--shard-size", "5"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "shard-000001.tar" in err


def test_shard_list_naming_missing_or_truncated_tar(tiny_corpus, tmp_path):
    listing = _shards(tiny_corpus, tmp_path / "s")
    (tmp_path / "s" / "shard-000002.tar").rename(tmp_path / "gone.tar")
    with pytest.raises(DataFormatError, match=r"shards.txt:3: shard .*shard-000002.tar not found"):
        read_shard_list(listing)
    (tmp_path / "gone.tar").rename(tmp_path / "s" / "shard-000002.tar")
    shard = tmp_path / "s" / "shard-000004.tar"
    shard.write_bytes(shard.read_bytes()[:-1024])
    with pytest.raises(DataFormatError, match=r"shards.txt:5: shard .*shard-000004.tar has"):
        read_shard_list(listing)


def test_truncated_tar_while_reading_names_shard_and_member(tiny_corpus, tmp_path):
    listing = _shards(tiny_corpus, tmp_path / "s")
    path = read_shard_list(listing).paths[0]
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])
    with pytest.raises(DataFormatError, match=r"shard-000000.tar: truncated or unreadable "
                                              r"after member spk\d+/u\d+"):
        list(iter_shard(path))


def test_member_without_speaker_names_shard_and_member(tmp_path):
    import webdataset as wds

    path = tmp_path / "bad.tar"
    with wds.TarWriter(str(path)) as writer:
        writer.write({"__key__": "spk1/u1", "flac": b"x", "json": json.dumps({"key": "spk1/u1"})})
    with pytest.raises(DataFormatError, match=r"bad.tar: member spk1/u1: no key, speaker"):
        list(iter_shard(path))


def test_utt2dur_disagreeing_with_audio_is_one_line_naming_file_and_line(tiny_corpus, tmp_path,
                                                                          capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus / "train", data)
    text = (data / "wav.scp").read_text().replace(" ../wav/", f" {tiny_corpus}/wav/")
    (data / "wav.scp").write_text(text)
    lines = (data / "utt2dur").read_text().splitlines()
    key = lines[6].split()[0]
    lines[6] = f"{key} 9.5000"
    (data / "utt2dur").write_text("\n".join(lines) + "\n")
    rc = main(["prepare", "shards", str(data), str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"utt2dur:7: {key} is 9.5 s here" in err


def test_verify_reads_every_shard(tiny_corpus, tmp_path):
    listing = _shards(tiny_corpus, tmp_path / "s")
    shards = verify_shards(listing)
    assert shards.utterances == len(read_utt2dur(tiny_corpus / "train" / "utt2dur"))


def test_unreadable_audio_leaves_no_shard_under_a_final_name(tiny_corpus, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus / "train", data)
    (data / "wav.scp").write_text(f"a0 {tmp_path}/missing.wav\n" + "".join(
        f"{k} {v}\n" for k, v in read_wav_scp(tiny_corpus / "train" / "wav.scp").items()))
    (data / "utt2spk").write_text("a0 spk0001\n" + (data / "utt2spk").read_text())
    (data / "utt2dur").unlink()
    rc = main(["prepare", "shards", str(data), str(tmp_path / "s"), "--shard-size", "100"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "missing.wav: file not found (utterance a0)" in err
    assert list((tmp_path / "s").iterdir()) == []
