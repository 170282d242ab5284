"""``utt2dur``: written by make-corpus and prepare voxceleb (equal to the headers), used by the
readers instead of the headers, a VoxCeleb2-size manifest loads fast and small, and a file
shorter than its entry is one error naming the ``utt2dur`` line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from r2n_audio.data import datasets
from r2n_audio.data.datasets import EvalDataset, TrainCropDataset
from r2n_audio.data.manifests import read_utt2dur, read_wav_scp, write_utt2dur
from r2n_audio.errors import DataFormatError

VOX2_UTTERANCES = 1_092_009


def test_make_corpus_utt2dur_equals_the_headers(tiny_corpus):
    for folder in (tiny_corpus, tiny_corpus / "train", tiny_corpus / "test"):
        durations = read_utt2dur(folder / "utt2dur")
        wavs = read_wav_scp(folder / "wav.scp")
        assert sorted(durations) == sorted(wavs)
        for key, path in wavs.items():
            info = sf.info(path)
            assert durations[key] == pytest.approx(info.frames / info.samplerate, abs=5e-5)


def test_prepare_voxceleb_writes_utt2dur(tmp_path):
    from r2n_audio.data.voxceleb import prepare_voxceleb

    lengths = {"id10001/vidA/00001": 8000, "id10002/vidC/00001": 12345}
    for key, n in lengths.items():
        path = tmp_path / "vox1" / "wav" / f"{key}.wav"
        path.parent.mkdir(parents=True)
        sf.write(path, np.zeros(n, np.float32), 16000, subtype="PCM_16")
    prepare_voxceleb(tmp_path / "out", vox1=tmp_path / "vox1")
    got = read_utt2dur(tmp_path / "out" / "vox1" / "utt2dur")
    assert got == {k: pytest.approx(n / 16000, abs=5e-5) for k, n in lengths.items()}


def test_readers_use_utt2dur_and_open_no_header(tiny_corpus, monkeypatch):
    def no_headers(path):
        raise AssertionError(f"header read: {path}")

    monkeypatch.setattr(datasets, "audio_duration", no_headers)
    train = tiny_corpus / "train"
    data = TrainCropDataset(train / "wav.scp", train / "utt2spk", crop_seconds=0.5,
                            durations=train / "utt2dur")
    wave, _ = data[3]
    assert wave.shape == (8000,)
    evaluation = EvalDataset(train / "wav.scp", utt2dur=train / "utt2dur")
    expected = read_utt2dur(train / "utt2dur")
    assert evaluation.durations() == [expected[k] for k in evaluation.keys]


def test_file_shorter_than_its_utt2dur_entry_names_the_line(tiny_corpus, tmp_path):
    train = tiny_corpus / "train"
    durations = read_utt2dur(train / "utt2dur")
    keys = sorted(durations)
    durations[keys[2]] = 60.0
    write_utt2dur(tmp_path / "utt2dur", durations)
    data = TrainCropDataset(train / "wav.scp", train / "utt2spk", crop_seconds=0.5,
                            durations=tmp_path / "utt2dur")
    with pytest.raises(DataFormatError, match=rf"utt2dur:3: {keys[2]} is 60.0 s here but "):
        for _ in range(20):  # an offset beyond the real end is drawn almost surely
            data[2]


def test_manifest_without_durations_for_some_keys(tiny_corpus, tmp_path):
    train = tiny_corpus / "train"
    (tmp_path / "utt2dur").write_text("spk0001/u0001 1.0\n")
    with pytest.raises(DataFormatError, match="utterances of wav.scp have no duration"):
        TrainCropDataset(train / "wav.scp", train / "utt2spk", durations=tmp_path / "utt2dur")


_LOAD = textwrap.dedent("""
    import json, resource, sys, time
    from r2n_audio.data.datasets import TrainCropDataset
    start, cpu = time.perf_counter(), time.process_time()
    data = TrainCropDataset(sys.argv[1] + "/wav.scp", sys.argv[1] + "/utt2spk",
                            durations=sys.argv[1] + "/utt2dur")
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "cpu_seconds": time.process_time() - cpu, "items": len(data),
                      "speakers": data.num_speakers,
                      "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
""")


def write_manifest(folder: Path, n: int) -> None:
    """A VoxCeleb2-shaped data dir of ``n`` utterances (5,994 speakers); no audio exists."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = [f"id{i % 5994:05d}/vid{i // 5994:05d}/{i % 97:05d}" for i in range(n)]
    lengths = np.random.default_rng(0).uniform(4.0, 20.0, n)
    with open(folder / "wav.scp", "w") as f:
        f.writelines(f"{k} /data/voxceleb2/wav/{k}.wav\n" for k in keys)
    with open(folder / "utt2spk", "w") as f:
        f.writelines(f"{k} {k[:7]}\n" for k in keys)
    with open(folder / "utt2dur", "w") as f:
        f.writelines(f"{k} {s:.4f}\n" for k, s in zip(keys, lengths))


def load_in_subprocess(folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _LOAD, str(folder)], check=True,
                          capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout)


def test_small_manifest_loads_without_any_audio(tmp_path):
    write_manifest(tmp_path / "d", 20_000)  # the audio does not exist: nothing may open it
    result = load_in_subprocess(tmp_path / "d")
    assert result["items"] == 20_000 and result["speakers"] == 5994


@pytest.mark.slow
def test_voxceleb2_size_manifest_loads_in_seconds_and_bounded_memory(tmp_path):
    write_manifest(tmp_path / "vox2", VOX2_UTTERANCES)
    result = load_in_subprocess(tmp_path / "vox2")
    print(f"VoxCeleb2-size manifest: {result}")
    assert result["items"] == VOX2_UTTERANCES
    # CPU time, not wall time: on a shared machine the wall clock measures the neighbours.
    # The peak resident size includes torch's own ~0.6 GB.
    assert result["cpu_seconds"] < 10.0 and result["max_rss_gb"] < 1.5
