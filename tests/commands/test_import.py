"""``r2n-audio import``: writes a bundle that ``embed`` uses; refuses to clobber."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from r2n_audio.cli import main
from r2n_audio.inference.bundle import load_bundle


def _speechbrain_folder(tmp_path: Path) -> Path:
    ecapa = pytest.importorskip("speechbrain.lobes.models.ECAPA_TDNN")
    folder = tmp_path / "sb"
    folder.mkdir()
    torch.manual_seed(0)
    model = ecapa.ECAPA_TDNN(40, channels=[64, 64, 64, 64, 192], attention_channels=32,
                             lin_neurons=48)
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    (folder / "hyperparams.yaml").write_text(
        "n_mels: 40\n"
        "compute_features: !new:speechbrain.lobes.features.Fbank\n    n_mels: !ref <n_mels>\n"
        "mean_var_norm: !new:speechbrain.processing.features.InputNormalization\n"
        "    norm_type: sentence\n    std_norm: False\n"
        "embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN\n"
        "    input_size: !ref <n_mels>\n    channels: [64, 64, 64, 64, 192]\n"
        "    attention_channels: 32\n    lin_neurons: 48\n")
    return folder


def test_import_then_embed(tmp_path: Path, make_wav, capsys) -> None:
    folder = _speechbrain_folder(tmp_path)
    out = tmp_path / "bundle.pt"
    assert main(["import", "speechbrain", str(folder), "-o", str(out)]) == 0
    assert "import: speechbrain" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle["frontend"]["type"] == "speechbrain" and bundle["frontend"]["n_mels"] == 40
    assert bundle["model_args"]["channels"] == [64, 64, 64, 64, 192]
    assert bundle["embedding_norm"]["mean"] is None
    wav = make_wav("x.wav", seconds=1.0)
    assert main(["embed", str(wav), "--model", str(out), "-o", str(tmp_path / "e"),
                 "--no-progress"]) == 0
    assert (tmp_path / "e" / "x.npy").is_file()
    before = out.read_bytes()
    assert main(["import", "speechbrain", str(folder), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before


def test_import_errors(tmp_path: Path, capsys) -> None:
    assert main(["import", "wespeaker", str(tmp_path / "nope"), "-o", "b.pt"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["import", "kaldi", str(tmp_path), "-o", "b.pt"]) == 2


def test_arch_does_not_apply_to_speechbrain(tmp_path: Path, capsys) -> None:
    folder = _speechbrain_folder(tmp_path)
    out = tmp_path / "b.pt"
    assert main(["import", "speechbrain", str(folder), "-o", str(out), "--arch", "x"]) == 2
    assert "--arch does not apply" in capsys.readouterr().err and not out.exists()


def test_output_that_is_a_folder_is_refused(tmp_path: Path, capsys) -> None:
    folder = _speechbrain_folder(tmp_path)
    (tmp_path / "out").mkdir()
    assert main(["import", "speechbrain", str(folder), "-o", str(tmp_path / "out"),
                 "--overwrite"]) == 2
    assert "not a regular file" in capsys.readouterr().err and (tmp_path / "out").is_dir()
