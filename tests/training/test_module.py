"""SpeakerModule: fast_dev_run for every loss and a 1-D and a 2-D backbone; schedules; state."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from r2n_audio.training.callbacks import MarginScheduler, margin_at
from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule, lr_factor

FRONTEND = {"type": "kaldi", "num_mel_bins": 24, "cmn": True}


def _data(tiny_corpus, **kw):
    return SpeakerDataModule(str(tiny_corpus / "train"), batch_size=4, num_workers=0,
                             crop_seconds=0.5, **kw)


@pytest.mark.parametrize("loss,extra", [
    ("aam", {}), ("aam", {"easy_margin": True}), ("am", {}),
    ("subcenter_aam", {"num_subcenters": 3, "inter_topk": 2, "inter_margin": 0.1})])
def test_fast_dev_run_each_loss(tiny_corpus, trainer_kwargs, loss, extra):
    data = _data(tiny_corpus)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny", frontend=FRONTEND,
                           loss=loss, optimizer="adamw", lr=1e-3, **extra)
    trainer = pl.Trainer(fast_dev_run=2, **trainer_kwargs)
    trainer.fit(module, data)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


@pytest.mark.parametrize("backbone", ["ecapa_tdnn_tiny", "res2net34_tiny"])
def test_fast_dev_run_1d_and_2d_backbones_with_validation(tiny_corpus, trainer_kwargs, backbone):
    data = _data(tiny_corpus, val_dir=str(tiny_corpus / "test"),
                 val_trials=str(tiny_corpus / "trials.txt"))
    module = SpeakerModule(data.num_classes, backbone=backbone, frontend=FRONTEND, lr=0.05)
    trainer = pl.Trainer(fast_dev_run=1, **trainer_kwargs)
    trainer.fit(module, data)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "train/margin", "train/lr"} <= set(metrics)
    # fast_dev_run embeds one validation batch, so the EER covers the trials inside it.
    assert 0.0 <= float(metrics.get("val/eer", 0.0)) <= 100.0


def test_num_classes_counts_speakers_and_speeds(tiny_corpus):
    assert _data(tiny_corpus).num_classes == 8
    assert _data(tiny_corpus, speed_perturb=True).num_classes == 24


def test_lr_factor_warmup_then_decay():
    assert lr_factor(0.05, 0.1, "exponential", 0.01) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1, "exponential", 0.01) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1, "exponential", 0.01) == pytest.approx(0.1)  # 0.01 ** 0.5
    assert lr_factor(1.0, 0.1, "cosine", 0.01) == pytest.approx(0.01)
    assert lr_factor(0.7, 0.0, "constant", 0.01) == 1.0


def test_margin_schedule_hand_worked():
    assert margin_at(10, 0.2, 20, 40) == 0.0
    assert margin_at(30, 0.2, 20, 40, mode="linear") == pytest.approx(0.1)
    # WeSpeaker's curve: 1 - 1e-3 ** t, t = 0.5 -> 1 - 0.0316
    assert margin_at(30, 0.2, 20, 40) == pytest.approx(0.2 * (1 - 10 ** -1.5))
    assert margin_at(45, 0.2, 20, 40) == 0.2


def test_margin_scheduler_moves_the_loss_margin(tiny_corpus, trainer_kwargs):
    data = _data(tiny_corpus)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny", frontend=FRONTEND,
                           margin=0.0)
    trainer = pl.Trainer(max_epochs=2, callbacks=[MarginScheduler(0.3, 0.0, 1.0, "linear")],
                         enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(module, data)
    assert module.loss_fn.margin == pytest.approx(0.3)


def test_checkpoint_carries_margin_and_rng_and_loads_weights_only(tiny_corpus, trainer_kwargs,
                                                                  tmp_path):
    data = _data(tiny_corpus)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny", frontend=FRONTEND,
                           margin=0.25)
    trainer = pl.Trainer(max_steps=1, **trainer_kwargs)
    trainer.fit(module, data)
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["state_dict"]["loss_fn._extra_state"] == {"margin": 0.25}
    assert {"torch", "numpy", "python"} <= set(ckpt["rng_states"])
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]
    restored = SpeakerModule.load_from_checkpoint(path, weights_only=True)
    assert restored.loss_fn.margin == pytest.approx(0.25)


def test_bundle_holds_backbone_only(tiny_corpus):
    module = SpeakerModule(8, backbone="ecapa_tdnn_tiny", frontend=FRONTEND)
    bundle = module.bundle()
    assert bundle["model_name"] == "ecapa_tdnn_tiny"
    assert bundle["model_args"] == {"feat_dim": 24}
    assert bundle["frontend"]["num_mel_bins"] == 24 and bundle["frontend"]["type"] == "kaldi"
    assert set(bundle["state_dict"]) == set(module.backbone.state_dict())


def test_bad_optimizer_name_is_a_clear_error():
    with pytest.raises(ValueError, match="adamw"):
        SpeakerModule(4, backbone="ecapa_tdnn_tiny", optimizer="adam")
