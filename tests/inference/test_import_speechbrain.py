"""``r2n-audio import speechbrain`` against SpeechBrain's own ``EncoderClassifier``; the yaml is
read as bounded data; pickles with code are refused."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from r2n_audio.audio import load_audio
from r2n_audio.cli import main
from r2n_audio.data.embeddings import load_embeddings
from r2n_audio.errors import ModelError
from r2n_audio.inference.embedder import Embedder
from r2n_audio.inference.importers import import_model, read_hyperparams

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
    folder = tmp_path / "evil_folder"
    shutil.copytree(speechbrain_folder, folder)
    shutil.copy(evil, folder / "embedding_model.ckpt")
    assert main(["import", "speechbrain", str(folder), "-o", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_not_a_model_folder(tmp_path: Path, capsys) -> None:
    assert main(["import", "speechbrain", str(tmp_path), "-o", str(tmp_path / "b.pt")]) == 2
    assert "hyperparams.yaml" in capsys.readouterr().err


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_nested_yaml_aliases_fail_fast(tmp_path: Path, capsys) -> None:
    assert len(BILLION_LAUGHS.encode()) < 600  # a 558-byte "billion laughs"
    folder = tmp_path / "laughs"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(BILLION_LAUGHS)
    start = time.perf_counter()
    with pytest.raises(ModelError, match="expand to more than 100,000 nodes"):
        read_hyperparams(folder / "hyperparams.yaml")
    (folder / "hyperparams.yaml").write_text(BILLION_LAUGHS + "j: [" + ", ".join(["*i"] * 40) + "]\n")
    with pytest.raises(ModelError, match="more than 100 YAML aliases"):
        read_hyperparams(folder / "hyperparams.yaml")
    assert main(["import", "speechbrain", str(folder), "-o", str(tmp_path / "b.pt")]) == 2
    assert time.perf_counter() - start < 5.0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "aliases" in err and not (tmp_path / "b.pt").exists()


def test_nested_refs_are_bounded_too(tmp_path: Path) -> None:
    lines = ["l0: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"l{i}: [{', '.join(['!ref <l%d>' % (i - 1)] * 10)}]" for i in range(1, 8)]
    (tmp_path / "hyperparams.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError, match="expand to more than"):
        read_hyperparams(tmp_path / "hyperparams.yaml")
