"""The VoxCeleb recipe: every shipped config builds at full size and runs a fast_dev_run (tiny
backbone) on the built-in corpus; the published schedules are in the configs; train.py runs the
shipped YAML on a fake VoxCeleb tree; the own-corpus example of the README runs on a CPU."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from r2n_audio.models import create_model
from r2n_audio.training.callbacks import EpochCheckpoint, MarginScheduler
from r2n_audio.training.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "recipes" / "voxceleb" / "conf"
OVERLAYS = {"lm.yaml": "resnet34.yaml", "lm_3dspeaker.yaml": "eres2net_base.yaml"}
MODELS = sorted(p.name for p in CONF.glob("*.yaml") if p.name not in OVERLAYS)
TINY = {"ecapa_tdnn_": "ecapa_tdnn_tiny", "res2net34_": "res2net34_tiny",
        "res2net50_": "res2net50_tiny", "eres2netv2": "eres2netv2_tiny",
        "eres2net_": "eres2net_tiny", "campplus": "campplus_tiny", "resnet34": "resnet34_tiny"}
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
    rirs = tmp_path / "data" / "RIRS_NOISES" / "simulated_rirs" / "smallroom" / "Room001"
    rirs.mkdir(parents=True)
    sf.write(rirs / "Room001-00001.wav", rir, 16000)
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
    folder = fake_voxceleb / "exp" / "voxceleb" / "ecapa_c512" / "checkpoints"
    checkpoints = sorted(folder.glob("*.ckpt"))
    assert [p.name for p in checkpoints] == ["epoch=000.ckpt", "last.ckpt"]
    assert "training data" in done.stdout + done.stderr  # the speaker count is reported


@pytest.fixture(autouse=True)
def _no_command_line(monkeypatch):
    """LightningCLI(args=...) warns when the test runner's own arguments are in sys.argv."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


def _configs(name: str) -> list[str]:
    """``--config`` arguments of a config (an overlay goes over its base model's config)."""
    files = [OVERLAYS[name], name] if name in OVERLAYS else [name]
    return [arg for f in files for arg in ("--config", str(CONF / f))]


def _tiny_backbone(name: str) -> str:
    model = yaml.safe_load((CONF / OVERLAYS.get(name, name)).read_text())["model"]
    backbone = model["backbone"]
    return next(tiny for prefix, tiny in TINY.items() if backbone.startswith(prefix))


def _on_tiny_corpus(corpus: Path) -> list[str]:
    return [f"--data.train_dir={corpus / 'train'}", f"--data.val_dir={corpus / 'test'}",
            f"--data.val_trials={corpus / 'trials.txt'}", f"--data.musan_dir={corpus / 'musan'}",
            f"--data.rir_dir={corpus / 'rirs'}", "--data.num_workers=0"]


def test_every_config_has_a_tiny_variant():
    assert {"resnet34.yaml", "eres2net_base.yaml", "eres2net_large.yaml", "eres2netv2.yaml",
            "campplus.yaml", "ecapa_c512.yaml"} <= set(MODELS)
    for name in MODELS:
        assert _tiny_backbone(name)


# The published schedules, from the upstream configs named in each YAML's header:
# (epochs, crop s, batch, lr, final ratio, schedule, warm-up, margin, margin start/end, aug p).
PUBLISHED = {
    "resnet34.yaml": (150, 2.0, 128, 0.2, 5e-5 / 0.1, "exponential", 6, 0.2, 19, 39, 0.6),
    "eres2net_base.yaml": (70, 3.0, 256, 0.2, 5e-5 / 0.2, "cosine", 5, 0.3, 20, 50, 0.8),
    "eres2net_large.yaml": (70, 3.0, 256, 0.2, 5e-5 / 0.2, "cosine", 5, 0.3, 20, 50, 0.8),
    "eres2netv2.yaml": (70, 3.0, 168, 0.2, 5e-5 / 0.2, "cosine", 5, 0.3, 20, 50, 0.8),
    "campplus.yaml": (60, 3.0, 256, 0.1, 1e-4 / 0.1, "cosine", 5, 0.2, 15, 25, 0.2),
    "lm.yaml": (5, 6.0, 64, 1e-4, 2.5e-5 / 1e-4, "exponential", 1, 0.5, 0, 0, 0.6),
    "lm_3dspeaker.yaml": (7, 6.0, 128, 1e-4, 2e-5 / 1e-4, "cosine", 1, 0.5, 0, 0, 0.8),
}


@pytest.mark.recipe
@pytest.mark.parametrize("name", MODELS + sorted(OVERLAYS))
def test_config_builds_at_full_size(name, tiny_corpus):
    cli = cli_main(_configs(name) + _on_tiny_corpus(tiny_corpus), run=False)
    model, hp, data = cli.model, cli.model.hparams, cli.datamodule.hparams
    reference = create_model(hp.backbone, **model.model_args)
    assert sum(p.numel() for p in model.backbone.parameters()) == \
        sum(p.numel() for p in reference.parameters())
    margins = [c for c in cli.trainer.callbacks if isinstance(c, MarginScheduler)]
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, EpochCheckpoint)]
    assert len(margins) == len(checkpoints) == 1
    assert checkpoints[0].dirpath is None  # resolved from --trainer.default_root_dir
    assert cli.datamodule._waveform_augment() is not None  # MUSAN and RIRs both used
    assert hp.scale == 32.0 and hp.loss == "aam" and data.speed_perturb
    if name in PUBLISHED:
        m = margins[0]
        got = (cli.trainer.max_epochs, data.crop_seconds, data.batch_size, hp.lr,
               hp.final_lr_ratio, hp.lr_schedule, hp.warmup_epochs, m.final_margin,
               m.start_epoch, m.end_epoch, data.aug_prob)
        assert got == pytest.approx(PUBLISHED[name])


@pytest.mark.recipe
@pytest.mark.parametrize("name", MODELS + sorted(OVERLAYS))
def test_config_fast_dev_run(name, tiny_corpus, tmp_path):
    """Each config as shipped (its precision; accelerator auto, the CPU here) with a tiny
    backbone: one training and one validation batch."""
    cli = cli_main(["fit", *_configs(name), *_on_tiny_corpus(tiny_corpus),
                    f"--model.backbone={_tiny_backbone(name)}", "--data.batch_size=4",
                    "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.enable_progress_bar=false",
                    "--trainer.enable_model_summary=false"])
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"]))
    assert 0.0 <= float(metrics["val/eer"]) <= 100.0


@pytest.mark.recipe
def test_lm_stage_keeps_the_head_and_writes_into_its_model_folder(tiny_corpus, tmp_path):
    """Stage 1, then conf/lm.yaml from its last checkpoint: the LM head starts as the whole
    first-stage head (every speed class) and the LM checkpoints go to <root>/lm/checkpoints."""
    root = tmp_path / "resnet34"
    common = [*_on_tiny_corpus(tiny_corpus), "--model.backbone=resnet34_tiny",
              "--data.batch_size=4", f"--trainer.default_root_dir={root}",
              "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
              "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false"]
    cli_main(["fit", *_configs("resnet34.yaml"), *common])
    stage1 = root / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in stage1.parent.iterdir()) == ["epoch=000.ckpt", "last.ckpt"]
    lm = cli_main(["fit", *_configs("lm.yaml"), *common, f"--model.init_from={stage1}",
                   "--model.lr=0.0"])  # one step that moves nothing: the head stays as loaded
    head = torch.load(stage1, weights_only=True)["state_dict"]["head.weight"]
    assert head.shape[0] == 24  # 8 speakers x 3 speeds
    assert torch.equal(lm.model.head.weight.detach(), head)
    assert lm.model.loss_fn.margin == 0.5
    assert sorted(p.name for p in (root / "lm" / "checkpoints").iterdir()) == \
        ["epoch=000.ckpt", "last.ckpt"]
    assert sorted(p.name for p in stage1.parent.iterdir()) == ["epoch=000.ckpt", "last.ckpt"]


@pytest.mark.recipe
def test_own_corpus_example_runs_on_cpu_and_writes_under_its_root(tiny_corpus, tmp_path,
                                                                   monkeypatch):
    """The README's own-corpus command, as written (ecapa_c512.yaml, no accelerator override),
    on a CPU-only run: everything it writes is under --trainer.default_root_dir."""
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", str(CONF / "ecapa_c512.yaml"),
                    f"--data.train_dir={tiny_corpus / 'train'}",
                    f"--data.val_dir={tiny_corpus / 'test'}",
                    f"--data.val_trials={tiny_corpus / 'trials.txt'}",
                    "--data.musan_dir=null", "--data.rir_dir=null", "--data.speed_perturb=false",
                    "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1",
                    "--trainer.default_root_dir=exp/mine",
                    # only to keep the test short:
                    "--model.backbone=ecapa_tdnn_tiny", "--data.batch_size=4",
                    "--data.num_workers=0", "--trainer.limit_train_batches=2",
                    "--trainer.enable_progress_bar=false"])
    assert cli.trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    assert sorted(p.name for p in (tmp_path / "exp" / "mine" / "checkpoints").iterdir()) == \
        ["epoch=000.ckpt", "last.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["mine"]
    assert "val/eer" in cli.trainer.callback_metrics


def test_train_script_and_readmes_agree_on_the_8_gpu_lr():
    """WeSpeaker's LR for 8 GPUs x 128 is 0.1 * 8 * 128 / 64 = 1.6 (times the number of
    nodes); every place that shows an 8-GPU command must say so (train.py's docstring once said
    0.8)."""
    import re

    texts = {p: (ROOT / p).read_text() for p in
             ("recipes/voxceleb/train.py", "recipes/voxceleb/README.md", "README.md")}
    for path, text in texts.items():
        for match in re.finditer(r"--trainer\.devices=8[^\n]*(?:\n[^\n]*)?", text):
            line = text[text.rfind("\n", 0, match.start()) + 1:match.start()] + match.group()
            nodes = re.findall(r"--trainer\.num_nodes=(\d+)", line) or ["1"]
            lrs = re.findall(r"--model\.lr=([0-9.]+)", match.group())
            assert [float(lr) for lr in lrs] == [pytest.approx(1.6 * int(nodes[0]))], \
                (path, line)
    assert re.search(r"--trainer\.devices=8", texts["recipes/voxceleb/train.py"])
