"""Importers against the toolkits they read: SpeechBrain's own EncoderClassifier, WeSpeaker's
documented feature pipeline (torchaudio Kaldi fbank on int16 samples + CMN)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from r2n_audio.audio import load_audio
from r2n_audio.cli import main
from r2n_audio.data.embeddings import load_embeddings
from r2n_audio.errors import ModelError
from r2n_audio.inference.embedder import Embedder
from r2n_audio.inference.importers import import_model, load_checkpoint, read_hyperparams
from r2n_audio.models import create_model

from .conftest import randomize


@pytest.fixture
def wav_dir(make_wav, tmp_path: Path) -> Path:
    for i, seconds in enumerate((1.0, 1.7, 2.35)):
        make_wav(f"wavs/utt{i}.wav", seconds=seconds)
    make_wav("wavs/stereo.wav", seconds=1.2, sr=44100, channels=2)
    return tmp_path / "wavs"


def test_speechbrain_parity_through_the_cli(speechbrain_folder: Path, wav_dir: Path,
                                            tmp_path: Path) -> None:
    inference = pytest.importorskip("speechbrain.inference.speaker")
    savedir = tmp_path / "sb_savedir"
    classifier = inference.EncoderClassifier.from_hparams(source=str(speechbrain_folder),
                                                          savedir=str(savedir))
    # The pretrainer linked or copied the local files: nothing was fetched from a hub.
    for name in ("embedding_model.ckpt", "mean_var_norm_emb.ckpt"):
        fetched = savedir / name
        assert fetched.exists() and fetched.resolve().read_bytes() == \
            (speechbrain_folder / name).read_bytes()

    bundle = tmp_path / "sb.pt"
    assert main(["import", "speechbrain", str(speechbrain_folder), "-o", str(bundle)]) == 0
    assert main(["embed", str(wav_dir), "--model", str(bundle), "-o", str(tmp_path / "emb"),
                 "--device", "cpu", "--no-progress"]) == 0
    ours = load_embeddings(tmp_path / "emb")
    assert sorted(ours) == ["stereo", "utt0", "utt1", "utt2"]
    for key, vector in ours.items():
        wave = load_audio(wav_dir / f"{key}.wav")
        with torch.no_grad():  # batch size 1: SpeechBrain's padded batches differ (#1374)
            ref = classifier.encode_batch(wave[None], normalize=True)[0, 0].numpy()
        assert np.abs(vector - ref).max() <= 1e-4, key


def test_speechbrain_without_embedding_statistics(speechbrain_folder: Path, tmp_path: Path) -> None:
    inference = pytest.importorskip("speechbrain.inference.speaker")
    folder = tmp_path / "no_stats"
    shutil.copytree(speechbrain_folder, folder)
    (folder / "mean_var_norm_emb.ckpt").unlink()
    text = (folder / "hyperparams.yaml").read_text()
    text = text.replace(str(speechbrain_folder), str(folder))
    cut = text.index("        mean_var_norm_emb: !ref <mean_var_norm_emb>\n    paths")
    text = text[:cut] + text[cut:].replace(
        "        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt\n", "")
    text = text.replace("        mean_var_norm_emb: !ref <mean_var_norm_emb>\n    paths",
                        "    paths")
    (folder / "hyperparams.yaml").write_text(text)
    bundle = import_model("speechbrain", folder)
    assert bundle["embedding_norm"]["mean"] is None
    classifier = inference.EncoderClassifier.from_hparams(source=str(folder),
                                                          savedir=str(tmp_path / "save"))
    wave = 0.1 * torch.randn(1, 24000, generator=torch.Generator().manual_seed(0))
    ours = Embedder.from_pretrained(bundle, device="cpu").embed_batch(wave)
    with torch.no_grad():
        ref = classifier.encode_batch(wave, normalize=False)[:, 0].numpy()
    assert np.abs(ours - ref).max() <= 1e-4


def test_hyperparams_are_read_as_data(speechbrain_folder: Path) -> None:
    hp = read_hyperparams(speechbrain_folder / "hyperparams.yaml")
    model = hp["embedding_model"]
    assert model["__tag__"] == "new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
    assert model["__value__"]["input_size"] == 80  # !ref <n_mels> resolved
    assert model["__value__"]["lin_neurons"] == 96


def _wespeaker_folder(tmp_path: Path, config_model: str = "ResNet34") -> tuple[Path, dict]:
    """A WeSpeaker-layout folder holding our tiny ResNet's weights under WeSpeaker's names."""
    net = randomize(create_model("resnet34_tiny"))
    ours = net.state_dict()
    theirs = {}
    for key, value in ours.items():
        key = key.replace(".downsample.", ".shortcut.")
        theirs[key.replace("embedding.", "seg_1.", 1) if key.startswith("embedding.") else key] = value
    theirs["projection.weight"] = torch.randn(10, net.embed_dim)  # the training head
    folder = tmp_path / "wespeaker"
    folder.mkdir()
    torch.save(theirs, folder / "avg_model.pt")
    (folder / "config.yaml").write_text(
        f"model: {config_model}\nmodel_args:\n  feat_dim: 80\n  embed_dim: {net.embed_dim}\n"
        "  pooling_func: TSTP\n  two_emb_layer: false\n"
        "dataset_args:\n  fbank_args:\n    num_mel_bins: 80\n    frame_shift: 10\n"
        "    frame_length: 25\n    dither: 1.0\n")
    return folder, ours


def test_wespeaker_resnet_with_its_feature_pipeline(tmp_path: Path, monkeypatch) -> None:
    import torchaudio.compliance.kaldi as kaldi

    import r2n_audio.inference.importers as importers

    folder, ours = _wespeaker_folder(tmp_path)
    # The tiny layout stands in for ResNet34 (same block and names, one block per stage).
    monkeypatch.setitem(importers._WESPEAKER_MODELS, "ResNet34", "resnet34_tiny")
    bundle = import_model("wespeaker", folder)
    assert "projection.weight" not in bundle["state_dict"]
    embedder = Embedder.from_pretrained(bundle, device="cpu")
    net = create_model("resnet34_tiny")
    net.load_state_dict(ours)
    net.eval()
    wave = 0.1 * torch.randn(1, 27000, generator=torch.Generator().manual_seed(0))
    # WeSpeaker's extraction: int16-scaled samples, Kaldi fbank with a hamming window, no
    # dither at test time, then CMN.
    feats = kaldi.fbank(wave * (1 << 15), num_mel_bins=80, frame_length=25, frame_shift=10,
                        dither=0.0, sample_frequency=16000, window_type="hamming",
                        use_energy=False)
    feats = feats - feats.mean(0)
    with torch.no_grad():
        ref = net(feats[None]).numpy()
    assert np.abs(embedder.embed_batch(wave) - ref).max() <= 1e-4


def test_wespeaker_unsupported_model_is_named(tmp_path: Path) -> None:
    folder, _ = _wespeaker_folder(tmp_path, config_model="ECAPA_TDNN_GLOB_c512")
    with pytest.raises(ModelError, match="ECAPA_TDNN_GLOB_c512.*not supported"):
        import_model("wespeaker", folder)


def test_mismatching_checkpoint_names_first_keys(speechbrain_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(speechbrain_folder, folder)
    state = torch.load(folder / "embedding_model.ckpt", weights_only=True)
    state["extra.weight"] = state.pop("fc.conv.weight")
    torch.save(state, folder / "embedding_model.ckpt")
    with pytest.raises(ModelError, match=r"missing keys \(1\): fc.conv.weight.*unexpected keys "
                                         r"\(1\): extra.weight"):
        import_model("speechbrain", folder)


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickle_with_code_is_refused(tmp_path: Path, speechbrain_folder: Path) -> None:
    evil = tmp_path / "evil.ckpt"
    torch.save({"weights": _Payload()}, evil)
    with pytest.raises(ModelError, match="refused to load"):
        load_checkpoint(evil)
    folder = tmp_path / "evil_folder"
    shutil.copytree(speechbrain_folder, folder)
    shutil.copy(evil, folder / "embedding_model.ckpt")
    assert main(["import", "speechbrain", str(folder), "-o", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_3dspeaker_is_refused_clearly(tmp_path: Path, capsys) -> None:
    assert main(["import", "3dspeaker", str(tmp_path), "-o", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ERes2Net and CAM++" in err


def test_not_a_model_folder(tmp_path: Path, capsys) -> None:
    assert main(["import", "speechbrain", str(tmp_path), "-o", str(tmp_path / "b.pt")]) == 2
    assert "hyperparams.yaml" in capsys.readouterr().err


def _wespeaker_resnet34_keys() -> dict[str, tuple[int, ...]]:
    """Names and shapes of WeSpeaker's ResNet34 (feat_dim 80, embed_dim 256, TSTP,
    two_emb_layer false) as its ``wespeaker/models/resnet.py`` builds them, written out by hand:
    a 3x3 stem 1 -> 32, BasicBlocks [3, 4, 6, 3] of 32/64/128/256 channels, a ``shortcut``
    (1x1 conv + BN) in the first block of layers 2-4, ``seg_1`` from 2 * 256 * (80 / 8) stats."""
    def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean",
                                                 "running_var")} | {f"{prefix}.num_batches_tracked": ()}

    keys = {"conv1.weight": (32, 1, 3, 3), **bn("bn1", 32)}
    cin = 32
    for layer, (blocks, c) in enumerate(zip((3, 4, 6, 3), (32, 64, 128, 256)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            keys |= {f"{p}.conv1.weight": (c, cin, 3, 3), **bn(f"{p}.bn1", c),
                     f"{p}.conv2.weight": (c, c, 3, 3), **bn(f"{p}.bn2", c)}
            if cin != c:
                keys |= {f"{p}.shortcut.0.weight": (c, cin, 1, 1), **bn(f"{p}.shortcut.1", c)}
            cin = c
    keys |= {"seg_1.weight": (256, 2 * 256 * 10), "seg_1.bias": (256,),
             "projection.weight": (5994, 256)}
    return keys


def test_wespeaker_resnet34_names_and_shapes_map_strictly(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    state = {k: (torch.tensor(0) if not shape else torch.randn(shape, generator=gen))
             for k, shape in _wespeaker_resnet34_keys().items()}
    folder = tmp_path / "voxceleb_resnet34"
    folder.mkdir()
    torch.save(state, folder / "avg_model.pt")
    (folder / "config.yaml").write_text(
        "model: ResNet34\nmodel_args:\n  feat_dim: 80\n  embed_dim: 256\n  pooling_func: TSTP\n"
        "  two_emb_layer: false\n")
    bundle = import_model("wespeaker", folder)
    assert bundle["model_name"] == "resnet34"
    params = sum(v.numel() for k, v in bundle["state_dict"].items() if "running" not in k
                 and "num_batches" not in k)
    assert params == 6_634_336  # WeSpeaker's published ResNet34 size (REFERENCE.md: 6.63M)
    assert torch.equal(bundle["state_dict"]["embedding.weight"], state["seg_1.weight"])
    assert torch.equal(bundle["state_dict"]["layer2.0.downsample.0.weight"],
                       state["layer2.0.shortcut.0.weight"])
