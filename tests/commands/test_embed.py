"""``r2n-audio embed``: folders and wav.scp, formats, resuming, bad inputs, kill and rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from r2n_audio.cli import main
from r2n_audio.data.embeddings import load_embeddings
from r2n_audio.inference.embedder import Embedder


def make_bundle_file(path: Path, model: str = "ecapa_tdnn_tiny") -> Path:
    """A bundle of ``model`` with random weights."""
    from r2n_audio.features.frontend import Frontend
    from r2n_audio.inference.bundle import make_bundle, save_bundle
    from r2n_audio.models import create_model

    torch.manual_seed(0)
    bundle = make_bundle(model, {}, create_model(model).state_dict(), Frontend().config())
    save_bundle(bundle, path)
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle_file(tmp_path / "model.pt")


@pytest.fixture
def audio_dir(make_wav, tmp_path: Path) -> Path:
    for i, seconds in enumerate((1.0, 1.5, 0.7)):
        make_wav(f"audio/spk{i % 2}/u{i}.wav", seconds=seconds)
    make_wav("audio/spk1/loud.flac", seconds=0.8)
    return tmp_path / "audio"


def embed(*args: str | Path) -> int:
    return main(["embed", *map(str, args), "--device", "cpu", "--no-progress"])


def test_folder_and_wav_scp_give_the_same_keys(bundle, audio_dir, tmp_path, capsys) -> None:
    assert embed(audio_dir, "--model", bundle, "-o", tmp_path / "emb") == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    assert final.startswith("embed: 4 done, 0 failed, 0 skipped") and " h of audio" in final
    from_dir = load_embeddings(tmp_path / "emb")
    assert sorted(from_dir) == ["spk0/u0", "spk0/u2", "spk1/loud", "spk1/u1"]
    embedder = Embedder.from_pretrained(bundle, device="cpu")
    for key, vector in from_dir.items():
        path = next(audio_dir.glob(f"{key}.*"))
        assert np.abs(embedder.embed_file(path) - vector).max() <= 1e-5
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} audio/{k}{'.flac' if 'loud' in k else '.wav'}\n"
                           for k in from_dir))
    assert embed(scp, "--model", bundle, "-o", tmp_path / "emb.npz") == 0
    from_scp = load_embeddings(tmp_path / "emb.npz")
    assert sorted(from_scp) == sorted(from_dir)
    assert all(np.abs(from_scp[k] - from_dir[k]).max() <= 1e-5 for k in from_dir)


@pytest.mark.parametrize("fmt", ["npz", "ark"])
def test_archives_resume_and_overwrite(bundle, audio_dir, tmp_path, capsys, fmt) -> None:
    out = tmp_path / f"emb.{fmt}"
    assert embed(audio_dir, "--model", bundle, "-o", out) == 0
    first = load_embeddings(out)
    assert len(first) == 4 and not (tmp_path / f"emb.{fmt}.partial").exists()
    capsys.readouterr()
    assert embed(audio_dir, "--model", bundle, "-o", out) == 0
    assert "0 done, 0 failed, 4 skipped" in capsys.readouterr().out
    assert embed(audio_dir, "--model", bundle, "-o", out, "--overwrite") == 0
    assert "4 done" in capsys.readouterr().out
    again = load_embeddings(out)
    assert all(np.abs(again[k] - first[k]).max() <= 1e-5 for k in first)


def _bad_files(make_wav, folder: str) -> None:
    good = make_wav(f"{folder}/good.wav", seconds=1.0)
    corrupt = Path(str(good).replace("good", "corrupt"))
    corrupt.write_bytes(good.read_bytes()[:30])  # a header cut short
    (good.parent / "empty.wav").write_bytes(b"")
    (good.parent / "notes.wav").write_text("this is not audio\n")
    make_wav(f"{folder}/clip.wav", seconds=0.05)
    make_wav(f"{folder}/stereo.wav", seconds=1.0, sr=44100, channels=2)


def test_bad_files_are_listed_and_skipped(bundle, make_wav, tmp_path, capsys) -> None:
    _bad_files(make_wav, "bad")
    assert embed(tmp_path / "bad", "--model", bundle, "-o", tmp_path / "out" / "emb") == 1
    captured = capsys.readouterr()
    assert sorted(load_embeddings(tmp_path / "out" / "emb")) == ["good", "stereo"]
    failed = (tmp_path / "out" / "failed.txt").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in failed) == ["clip", "corrupt", "empty", "notes"]
    assert any("too short" in line for line in failed)
    skipped = [ln for ln in captured.err.splitlines() if "skipped" in ln]
    assert len(skipped) == 4 and all(str(tmp_path / "bad") in ln for ln in skipped)
    assert "2 done, 4 failed" in captured.out


def test_strict_stops_with_exit_2_and_keeps_earlier_output(bundle, make_wav, tmp_path,
                                                           capsys) -> None:
    _bad_files(make_wav, "bad")
    out = tmp_path / "emb"
    assert embed(tmp_path / "bad", "--model", bundle, "-o", out) == 1
    before = {p: p.read_bytes() for p in out.rglob("*.npy")}
    capsys.readouterr()
    assert embed(tmp_path / "bad", "--model", bundle, "-o", out, "--strict", "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("r2n-audio embed: error: ") and str(tmp_path / "bad") in err[-1]
    assert {p: p.read_bytes() for p in out.rglob("*.npy")} == before


def test_fatal_inputs_exit_2(bundle, audio_dir, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "emb"
    cases = [
        ([tmp_path / "missing_dir", "--model", bundle], "input not found"),
        ([audio_dir, "--model", tmp_path / "missing.pt"], "no such model bundle"),
    ]
    wrong = tmp_path / "state_dict.pt"
    torch.save({"w": torch.zeros(3)}, wrong)
    cases.append(([audio_dir, "--model", wrong], "not an r2n-audio bundle"))
    text = tmp_path / "model.txt"
    text.write_text("hello")
    cases.append(([audio_dir, "--model", text], "not a readable torch file"))
    for args, message in cases:
        assert embed(*args, "-o", out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
        assert not out.exists()
    # An unreadable folder (root ignores permissions, so simulate it there).
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == locked else real(p, m))
    else:
        locked.chmod(0)
    try:
        assert embed(locked, "--model", bundle, "-o", out) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


def test_kill_and_rerun_equals_one_run(tmp_path: Path, rng) -> None:
    folder = tmp_path / "many"
    for i in range(240):
        path = folder / f"s{i % 6}" / f"u{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = 0.1 * rng.standard_normal(int(16000 * rng.uniform(0.3, 0.9)))
        sf.write(path, data.astype(np.float32), 16000)
    bundle = make_bundle_file(tmp_path / "model.pt")
    out = tmp_path / "killed"
    script = Path(sys.executable).with_name("r2n-audio")
    proc = subprocess.Popen([str(script), "embed", str(folder), "--model", str(bundle), "-o",
                             str(out), "--device", "cpu", "--batch-seconds", "3",
                             "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and sum(1 for _ in out.rglob("*.npy")) >= 40:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = load_embeddings(out)  # every file under a final name is complete
    assert 0 < len(partial) < 240, "the run was not interrupted halfway"
    assert embed(folder, "--model", bundle, "-o", out) == 0
    assert not [p for p in out.rglob(".*")]  # no temporaries left behind
    assert embed(folder, "--model", bundle, "-o", tmp_path / "whole") == 0
    resumed, whole = load_embeddings(out), load_embeddings(tmp_path / "whole")
    assert sorted(resumed) == sorted(whole) and len(whole) == 240
    assert max(np.abs(resumed[k] - whole[k]).max() for k in whole) <= 1e-5
