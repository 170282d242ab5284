"""``r2n-audio average``: the last N checkpoints of a folder, a bundle of the average, and
never writing over a checkpoint it reads."""

from __future__ import annotations

import torch

from r2n_audio.cli import main
from r2n_audio.inference.bundle import load_bundle

from ..training.test_averaging import _checkpoint

KEY = "blocks.0.conv.conv.weight"


def test_folder_last_n_and_bundle(tmp_path, capsys):
    states = {i: _checkpoint(tmp_path / f"epoch={i}.ckpt", seed=i) for i in (2, 10, 1)}
    _checkpoint(tmp_path / "last.ckpt", seed=99)
    out = tmp_path / "avg" / "avg.ckpt"
    assert main(["average", str(tmp_path), "--last", "2", "-o", str(out), "--bundle",
                 str(tmp_path / "model.pt")]) == 0
    printed = capsys.readouterr().out
    assert "average: 2 checkpoints (epoch=2.ckpt, epoch=10.ckpt)" in printed
    averaged = torch.load(out, weights_only=True)["state_dict"]
    expected = (states[2][f"backbone.{KEY}"] + states[10][f"backbone.{KEY}"]) / 2
    torch.testing.assert_close(averaged[f"backbone.{KEY}"], expected)
    torch.testing.assert_close(load_bundle(tmp_path / "model.pt")["state_dict"][KEY], expected)


def test_never_writes_over_a_checkpoint_it_reads(tmp_path, capsys):
    for i in (1, 2):
        _checkpoint(tmp_path / f"epoch={i}.ckpt", seed=i)
    before = (tmp_path / "epoch=2.ckpt").read_bytes()
    for extra in ([], ["--bundle", str(tmp_path / "epoch=2.ckpt")]):
        out = tmp_path / ("epoch=2.ckpt" if not extra else "avg.ckpt")
        assert main(["average", str(tmp_path / "epoch=1.ckpt"), str(tmp_path / "epoch=2.ckpt"),
                     "-o", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "it is an input of this command" in err[0]
    assert (tmp_path / "epoch=2.ckpt").read_bytes() == before
    assert not (tmp_path / "avg.ckpt").exists()


def test_bad_inputs_are_one_line(tmp_path, capsys):
    assert main(["average", str(tmp_path), "--last", "0", "-o", str(tmp_path / "a.ckpt")]) == 2
    assert "must be >= 1, got 0" in capsys.readouterr().err
    assert main(["average", str(tmp_path), "-o", str(tmp_path / "a.ckpt")]) == 2
    assert "no *.ckpt checkpoints" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    assert main(["average", str(tmp_path / "plain.pt"), "-o", str(tmp_path / "a.ckpt")]) == 2
    assert "not a Lightning training checkpoint" in capsys.readouterr().err
