"""SpeakerModule: fast_dev_run for every loss and a 1-D and a 2-D backbone; schedules; state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from r2n_audio.errors import ModelError
from r2n_audio.training.callbacks import MarginScheduler, margin_at
from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule, lr_factor

from ..inference.upstream_models import upstream_file

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
    # fast_dev_run embeds one validation batch (all 16 test utterances fit in it), so every
    # trial is scored: the EER must be there, not read with a default.
    assert {"val/eer", "val/min_dcf_0.01", "val/min_dcf_0.05"} <= set(metrics)
    assert 0.0 <= float(metrics["val/eer"]) <= 100.0


def test_num_classes_counts_speakers_and_speeds(tiny_corpus):
    assert _data(tiny_corpus).num_classes == 8
    assert _data(tiny_corpus, speed_perturb=True).num_classes == 24


def test_exponential_lr_is_wespeakers_schedule():
    ref = upstream_file("wespeaker", "utils/schedulers.py")
    epochs, per_epoch, warm, scale = 10, 7, 2, 2.0  # 2 GPUs x 64: WeSpeaker's hidden factor 2
    sched = ref.ExponentialDecrease(None, epochs, per_epoch, 0.1, 5e-5, warm, scale_ratio=scale,
                                    warm_from_zero=True)
    total = epochs * per_epoch
    for t in range(total):
        ours = 0.2 * lr_factor(t / total, warm / epochs, "exponential", 5e-5 / 0.1)
        assert ours == pytest.approx(sched.step_return_lr(t), rel=1e-12, abs=1e-15)
    # Hand-worked: 150 epochs, 6 warm-up, peak 0.2, ratio 5e-4; epoch 3 of 150 is halfway
    # up the ramp: 0.2 * 0.5 * 0.0005 ** 0.02 = 0.0858973; the last LR is 0.2 * 5e-4 = 1e-4.
    assert 0.2 * lr_factor(0.02, 6 / 150, "exponential", 5e-4) == pytest.approx(0.0858973, rel=1e-6)
    assert 0.2 * lr_factor(1.0, 6 / 150, "exponential", 5e-4) == pytest.approx(1e-4)


def test_cosine_lr_is_3dspeakers_schedule():
    ref = upstream_file("speakerlab", "process/scheduler.py")
    sched = ref.WarmupCosineScheduler(None, min_lr=5e-5, max_lr=0.2, warmup_epoch=2,
                                      fix_epoch=10, step_per_epoch=7)
    for t in range(70):
        ours = 0.2 * lr_factor(t / 70, 2 / 10, "cosine", 5e-5 / 0.2)
        assert ours == pytest.approx(sched.clr(t), rel=1e-12)
    assert lr_factor(0.7, 0.0, "constant", 0.01) == 1.0


def test_trainer_steps_follow_wespeakers_lr(tiny_corpus, trainer_kwargs):
    """Within a real run: the LR of every optimizer step is WeSpeaker's for that step."""
    ref = upstream_file("wespeaker", "utils/schedulers.py")
    seen = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    data = _data(tiny_corpus)
    module = SpeakerModule(data.num_classes, backbone="ecapa_tdnn_tiny", frontend=FRONTEND,
                           lr=0.4, warmup_epochs=1, final_lr_ratio=0.01)
    trainer = pl.Trainer(max_epochs=3, callbacks=[Record()], enable_checkpointing=False,
                         **trainer_kwargs)
    trainer.fit(module, data)
    per_epoch = len(seen) // 3
    sched = ref.ExponentialDecrease(None, 3, per_epoch, 0.4, 0.004, 1, warm_from_zero=True)
    assert len(seen) == 3 * per_epoch == 24
    np.testing.assert_allclose(seen, [sched.step_return_lr(t) for t in range(len(seen))],
                               rtol=1e-9, atol=1e-12)


def test_final_lr_ratio_is_checked():
    with pytest.raises(ValueError, match="final_lr_ratio"):
        SpeakerModule(4, backbone="ecapa_tdnn_tiny", final_lr_ratio=0.0)
    with pytest.raises(ValueError, match="final_lr_ratio"):
        SpeakerModule(4, backbone="ecapa_tdnn_tiny", final_lr_ratio=5e-5 / 1e-6)
    SpeakerModule(4, backbone="ecapa_tdnn_tiny", lr_schedule="cosine", final_lr_ratio=0.0)


def test_margin_schedule_hand_worked():
    assert margin_at(10, 0.2, 20, 40) == 0.0
    assert margin_at(30, 0.2, 20, 40, mode="linear") == pytest.approx(0.1)
    # WeSpeaker's curve: 1 - 1e-3 ** t, t = 0.5 -> 1 - 0.0316
    assert margin_at(30, 0.2, 20, 40) == pytest.approx(0.2 * (1 - 10 ** -1.5))
    assert margin_at(45, 0.2, 20, 40) == 0.2
    assert margin_at(0.0, 0.5, 0, 0) == 0.5  # no ramp: the final margin from the first step


class _Projection:
    margin = 0.0

    def update(self, margin):
        self.margin = margin


def test_margin_schedules_are_wespeakers_and_3dspeakers():
    """WeSpeaker counts epochs from 1 (its ``increase_start_epoch: 20`` starts after 19
    epochs), 3D-Speaker from 0: the configs say 19/39 and 20/50 for the published 20/40, 20/50."""
    wespeaker = upstream_file("wespeaker", "utils/schedulers.py")
    speakerlab = upstream_file("speakerlab", "process/scheduler.py")
    per_epoch = 5
    model = type("M", (), {"projection": _Projection()})()
    we = wespeaker.MarginScheduler(model, per_epoch, 20, 40, 0.0, 0.2, True, "exp")
    loss = type("L", (), {"update": lambda self, margin: None})()
    sl = speakerlab.MarginScheduler(loss, 20, 50, per_epoch, 0.0, 0.3)
    for t in range(0, 55 * per_epoch, 3):
        we.step(t)
        sl.step(t)
        epoch = t / per_epoch
        assert margin_at(epoch, 0.2, 19, 39) == pytest.approx(model.projection.margin, abs=1e-6)
        assert margin_at(epoch, 0.3, 20, 50) == pytest.approx(sl.get_margin(), abs=1e-6)


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


def _stage_one_checkpoint(tmp_path, num_classes: int):
    module = SpeakerModule(num_classes, backbone="ecapa_tdnn_tiny", frontend=FRONTEND)
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    return module, str(path)


def _assert_same_backbone(a: SpeakerModule, b: SpeakerModule) -> None:
    theirs = b.backbone.state_dict()
    for key, value in a.backbone.state_dict().items():
        assert torch.equal(value, theirs[key]), key


def test_init_from_keeps_every_speed_class_of_the_head(tmp_path):
    """Large-margin fine-tuning starts from the whole first-stage head (8 speakers x 3 speeds),
    as WeSpeaker and 3D-Speaker do; a head of another size is an error, or a fresh start."""
    first, path = _stage_one_checkpoint(tmp_path, 24)
    lm = SpeakerModule(24, backbone="ecapa_tdnn_tiny", frontend=FRONTEND, margin=0.5,
                       init_from=path)
    lm.setup("fit")
    assert torch.equal(lm.head.weight, first.head.weight)
    _assert_same_backbone(lm, first)
    with pytest.raises(ModelError, match="24 rows, this run's 8.*init_head=false"):
        SpeakerModule(8, backbone="ecapa_tdnn_tiny", frontend=FRONTEND, init_from=path).setup("fit")
    fresh = SpeakerModule(8, backbone="ecapa_tdnn_tiny", frontend=FRONTEND, init_from=path,
                          init_head=False)
    untouched = fresh.head.weight.detach().clone()
    fresh.setup("fit")
    assert torch.equal(fresh.head.weight, untouched)
    _assert_same_backbone(fresh, first)


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
