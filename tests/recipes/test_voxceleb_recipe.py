"""recipes/voxceleb/train.py with the shipped YAML, on a fake VoxCeleb tree made in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
VOX1 = ["id10001/vidA/00001", "id10001/vidA/00002", "id10001/vidB/00001",
        "id10002/vidC/00001", "id10002/vidC/00002"]
VOX2 = ["id00012/v1/00001", "id00012/v1/00002", "id00012/v2/00001",
        "id00015/v3/00001", "id00015/v3/00002", "id00019/v4/00001", "id00019/v4/00002"]


def _write(path: Path, rng, seconds: float = 1.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)


@pytest.fixture
def fake_voxceleb(tmp_path, rng):
    """Official layouts (VoxCeleb2 already converted to wav), a cleaned Vox1-O list, tiny MUSAN
    and RIR folders, prepared with ``prepare_voxceleb`` into ``tmp_path/data/voxceleb``."""
    from r2n_audio.data.voxceleb import prepare_voxceleb

    for key in VOX1:
        _write(tmp_path / "vox1" / "wav" / f"{key}.wav", rng)
    for key in VOX2:
        _write(tmp_path / "vox2" / "wav" / f"{key}.wav", rng)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "veri_test2.txt").write_text("1 id10001/vidA/00001.wav id10001/vidB/00001.wav\n"
                                          "0 id10001/vidA/00002.wav id10002/vidC/00001.wav\n")
    prepare_voxceleb(tmp_path / "data" / "voxceleb", vox1=tmp_path / "vox1",
                     vox2=tmp_path / "vox2", trials_dir=lists)
    for sub in ("noise", "music", "speech"):
        _write(tmp_path / "data" / "musan" / sub / "a.wav", rng, 2.0)
    rir = np.zeros(800, np.float32)
    rir[[0, 200, 500]] = [1.0, 0.4, 0.1]
    (tmp_path / "data" / "rirs").mkdir(parents=True)
    sf.write(tmp_path / "data" / "rirs" / "room.wav", rir, 16000)
    return tmp_path


@pytest.mark.recipe
def test_voxceleb_train_script_runs_the_shipped_config(fake_voxceleb):
    args = [sys.executable, str(ROOT / "recipes" / "voxceleb" / "train.py"), "fit",
            "--config", str(ROOT / "recipes" / "voxceleb" / "conf" / "ecapa_c512.yaml"),
            "--trainer.accelerator=cpu", "--trainer.precision=32-true",
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.check_val_every_n_epoch=1",
            "--model.backbone=ecapa_tdnn_tiny", "--data.batch_size=4", "--data.num_workers=0"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(args, cwd=fake_voxceleb, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoints = sorted((fake_voxceleb / "exp" / "voxceleb" / "ecapa_c512" / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in checkpoints] == ["epoch=000.ckpt", "last.ckpt"]
    assert "training data" in done.stdout + done.stderr  # the speaker count is reported
