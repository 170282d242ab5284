"""``r2n-audio embed``: folders and wav.scp, formats, resuming, bad inputs, kill and rerun."""

from __future__ import annotations

import os
import shutil
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
    return main(["embed", *map(str, args), "--device", "cpu", "--quiet"])


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
    failed = (tmp_path / "out" / "emb.failed.txt").read_text().splitlines()[1:]
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
    cases.append(([audio_dir, "--model", text], "not a torch bundle"))
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
                             "--quiet"], stdout=subprocess.DEVNULL,
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


# --- issue 11: nothing lost (items 1, 3, 4, 10, 12, 15) -------------------------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def _scp(tmp_path: Path, audio_dir: Path, lines: list[str] | None = None) -> Path:
    scp = tmp_path / "data" / "wav.scp"
    scp.parent.mkdir(exist_ok=True)
    lines = lines or [f"{p.relative_to(audio_dir).with_suffix('')} {p}"
                      for p in sorted(audio_dir.rglob("*.*"))]
    scp.write_text("".join(f"{line}\n" for line in lines))
    return scp


@pytest.mark.parametrize("output", ["data/wav.ark", "data/wav.scp", "data/wav"])
def test_the_input_list_is_never_written_over(bundle, audio_dir, tmp_path, capsys,
                                              output) -> None:
    scp = _scp(tmp_path, audio_dir)
    before = scp.read_bytes()
    extra = ["--format", "ark"] if output == "data/wav" else []
    assert embed(scp, "--model", bundle, "-o", tmp_path / output, *extra) == 2
    line = _one_error_line(capsys)
    assert f"cannot write {scp}" in line and "input of this command" in line
    assert scp.read_bytes() == before
    assert sorted(p.name for p in scp.parent.iterdir()) == ["wav.scp"]


def test_a_staging_folder_holding_the_input_is_never_removed(bundle, audio_dir, tmp_path,
                                                             capsys) -> None:
    staging = tmp_path / "emb.npz.partial"  # the folder an npz run stages in, then removes
    shutil.copytree(audio_dir, staging / "audio")
    for source in (staging, staging / "audio"):
        assert embed(source, "--model", bundle, "-o", tmp_path / "emb.npz") == 2
        assert f"cannot write {staging}" in _one_error_line(capsys)
    assert len(list(staging.rglob("*.wav"))) == 3


def test_failed_lists_are_named_after_their_output(bundle, make_wav, tmp_path, capsys) -> None:
    _bad_files(make_wav, "bad")
    out = tmp_path / "out"
    out.mkdir()
    (out / "failed.txt").write_text("my own notes\n")
    assert embed(tmp_path / "bad", "--model", bundle, "-o", out / "a.npz") == 1
    assert embed(tmp_path / "bad", "--model", bundle, "-o", out / "b.ark") == 1
    assert embed(tmp_path / "bad", "--model", bundle, "-o", out / "c") == 1
    assert "failures listed in " + str(out / "c.failed.txt") in capsys.readouterr().out
    for name in ("a.npz.failed.txt", "b.ark.failed.txt", "c.failed.txt"):
        assert len((out / name).read_text().splitlines()) == 5, name  # header + 4 bad files
    assert (out / "failed.txt").read_text() == "my own notes\n"
    (out / "d.failed.txt").write_text("my own notes\n")  # a user's file with that name
    assert embed(tmp_path / "bad", "--model", bundle, "-o", out / "d") == 2
    assert "is not a list of failures" in _one_error_line(capsys)
    assert (out / "d.failed.txt").read_text() == "my own notes\n" and not (out / "d").exists()


def test_standard_output_is_refused_in_one_line(bundle, audio_dir, tmp_path, capsys) -> None:
    assert embed(audio_dir, "--model", bundle, "-o", "-") == 2
    assert "standard output cannot hold them" in _one_error_line(capsys)
    assert not Path("-").exists()


@pytest.mark.parametrize("lines, message", [
    (["spk a.wav", "spk/ a.wav"], "'spk/' has an empty path component ('//', or '/' at an "
                                  "end); it would be written to the same file as 'spk' (line 1)"),
    (["a/b a.wav", "a//b a.wav"], "'a//b' has an empty path component ('//', or '/' at an "
                                  "end); it would be written to the same file as 'a/b' (line 1)"),
    (["a/./b a.wav"], "'a/./b' has a '.' or '..' path component"),
    ([". a.wav"], "'.' has a '.' or '..' path component"),
    (["x a.wav", "../up a.wav"], "'../up' has a '.' or '..' path component"),
    (["/abs a.wav"], "'/abs' has an empty path component"),
])
def test_keys_that_share_or_escape_a_file_are_refused(bundle, make_wav, tmp_path, capsys,
                                                       lines, message) -> None:
    make_wav("data/a.wav")
    scp = _scp(tmp_path, tmp_path, lines)
    assert embed(scp, "--model", bundle, "-o", tmp_path / "emb") == 2
    line = _one_error_line(capsys)
    assert message in line and f"{scp}:{len(lines)}:" in line
    assert not (tmp_path / "emb").exists()


def test_symlinked_folders_are_followed_once_and_every_extension_is_read(
        bundle, make_wav, tmp_path, capsys) -> None:
    from r2n_audio.audio import AUDIO_EXTENSIONS

    elsewhere = tmp_path / "elsewhere"
    formats = {".wav": None, ".flac": None, ".ogg": None, ".opus": ("OGG", "OPUS"),
               ".mp3": ("MP3", "MPEG_LAYER_III")}
    assert sorted(formats) == sorted(AUDIO_EXTENSIONS)  # a new extension needs a case here
    signal = make_wav("tone.wav").read_bytes()
    data, sr = sf.read(tmp_path / "tone.wav")
    for ext, fmt in formats.items():
        target = elsewhere / f"u{ext.replace('.', '_')}{ext}"
        target.parent.mkdir(exist_ok=True)
        if fmt is None:
            sf.write(target, data, sr)
        else:
            sf.write(target, data, sr, format=fmt[0], subtype=fmt[1])
    root = tmp_path / "root"
    (root / "own").mkdir(parents=True)
    (root / "own" / "x.wav").write_bytes(signal)
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "own" / "loop").symlink_to(root, target_is_directory=True)  # a cycle
    assert embed(root, "--model", bundle, "-o", tmp_path / "emb") == 0
    keys = sorted(load_embeddings(tmp_path / "emb"))
    assert keys == sorted(["own/x"] + [f"linked/u{e.replace('.', '_')}" for e in formats])


@pytest.mark.parametrize("option, value, message", [
    ("--device", "tpu", "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    ("--batch-seconds", "nan", "must be a finite number > 0, got 'nan'"),
    ("--batch-seconds", "inf", "must be a finite number > 0, got 'inf'"),
    ("--workers", "0", "must be >= 1, got 0"),
])
def test_bad_option_values_are_usage_errors(bundle, audio_dir, tmp_path, capsys, option, value,
                                            message) -> None:
    assert main(["embed", str(audio_dir), "--model", str(bundle), "-o", str(tmp_path / "e"),
                 option, value]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_output_under_a_file_is_one_line(bundle, audio_dir, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert embed(audio_dir, "--model", bundle, "-o", tmp_path / "file" / "emb") == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"r2n-audio embed: error: cannot write {tmp_path / 'file' / 'emb'}")
    assert line.endswith("Not a directory")


def test_a_log_gets_no_bar_and_quiet_gets_nothing(bundle, audio_dir, tmp_path, capsys) -> None:
    args = ["embed", str(audio_dir), "--model", str(bundle), "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert "\r" not in capsys.readouterr().err  # stderr is not a terminal under pytest
    assert main([*args, "-o", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_an_audio_file_named_like_the_output_is_never_written_over(bundle, tmp_path, capsys,
                                                                  rng) -> None:
    audio = tmp_path / "data" / "emb.ark"  # a wav under an archive's name, listed in wav.scp
    audio.parent.mkdir()
    sf.write(audio, 0.1 * rng.standard_normal(16000), 16000, format="WAV")
    before = audio.read_bytes()
    scp = _scp(tmp_path, tmp_path, [f"u1 {audio}"])
    assert embed(scp, "--model", bundle, "-o", audio) == 2
    assert f"cannot write {audio}: it is an input" in _one_error_line(capsys)
    assert audio.read_bytes() == before
