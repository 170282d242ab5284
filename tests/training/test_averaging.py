"""Checkpoint averaging (against a hand-computed mean) and starting a stage from weights."""

from __future__ import annotations

import torch

from r2n_audio.inference.bundle import load_bundle
from r2n_audio.training.averaging import average_checkpoints, last_checkpoints
from r2n_audio.training.module import SpeakerModule

FRONTEND = {"type": "kaldi", "num_mel_bins": 24}


def _checkpoint(path, seed: int, classes: int = 6):
    torch.manual_seed(seed)
    module = SpeakerModule(classes, backbone="ecapa_tdnn_tiny", frontend=FRONTEND)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)},
               path)
    return module.state_dict()


def test_average_equals_mean_of_state_dicts(tmp_path):
    states = [_checkpoint(tmp_path / f"epoch={i}.ckpt", seed=i) for i in range(3)]
    averaged = average_checkpoints([tmp_path / f"epoch={i}.ckpt" for i in (1, 2)])["state_dict"]
    for key, value in states[2].items():
        if torch.is_tensor(value) and value.is_floating_point():
            torch.testing.assert_close(averaged[key], (states[1][key] + states[2][key]) / 2)
        elif torch.is_tensor(value):
            assert torch.equal(averaged[key], value)  # e.g. num_batches_tracked: the last one


def test_last_checkpoints_orders_by_epoch(tmp_path):
    for i in (2, 10, 1):
        _checkpoint(tmp_path / f"epoch={i}.ckpt", seed=i)
    _checkpoint(tmp_path / "last.ckpt", seed=99)
    assert [p.name for p in last_checkpoints(tmp_path, 2)] == ["epoch=2.ckpt", "epoch=10.ckpt"]


def test_init_from_loads_backbone_and_the_whole_head(tmp_path):
    source = _checkpoint(tmp_path / "stage1.ckpt", seed=0, classes=6)  # e.g. 2 speakers x 3 speeds
    module = SpeakerModule(6, backbone="ecapa_tdnn_tiny", frontend=FRONTEND,
                           init_from=str(tmp_path / "stage1.ckpt"))
    module.setup("fit")
    torch.testing.assert_close(module.head.weight, source["head.weight"])  # every speed class
    key = "blocks.0.conv.conv.weight"
    torch.testing.assert_close(module.backbone.state_dict()[key], source[f"backbone.{key}"])
