"""SpeakerDataModule's augmentation and speed options: WeSpeaker's defaults, 3D-Speaker's
variants, and the values reaching the augmentation modules through the LightningCLI."""

from __future__ import annotations

import pytest
import yaml

from r2n_audio.features.augment import AddNoise, AugmentChain, OneOf, Reverberate
from r2n_audio.training.cli import main as cli_main
from r2n_audio.training.datamodule import SpeakerDataModule


def _data(corpus, **kw) -> SpeakerDataModule:
    return SpeakerDataModule(str(corpus / "train"), batch_size=4, num_workers=0,
                             crop_seconds=0.5, musan_dir=str(corpus / "musan"),
                             rir_dir=str(corpus / "rirs"), **kw)


def test_default_augmentation_is_wespeakers(tiny_corpus):
    augment = _data(tiny_corpus)._waveform_augment()
    assert isinstance(augment, OneOf) and augment.p == pytest.approx(0.6)
    noise, reverb = augment.choices  # reverb or noise, equally likely
    assert isinstance(noise, AddNoise) and isinstance(reverb, Reverberate)
    assert noise.snr == {"noise": (0.0, 15.0), "music": (5.0, 15.0), "speech": (10.0, 30.0)}
    assert noise.babble_speakers == (1, 1)
    counts = {c: len(files) for c, files in noise.files.items()}  # 40 files each here
    total = sum(counts.values())
    assert noise.probabilities == pytest.approx({c: n / total for c, n in counts.items()})


def test_3dspeaker_augmentation_through_the_cli(tiny_corpus, tmp_path, monkeypatch):
    """3D-Speaker's scheme as its VoxCeleb configs set it: every category 0-15 dB, one file
    from all of MUSAN, and noise / reverb / reverb-then-noise equally likely."""
    config = tmp_path / "aug.yaml"
    config.write_text(yaml.safe_dump({"data": {
        "train_dir": str(tiny_corpus / "train"), "musan_dir": str(tiny_corpus / "musan"),
        "rir_dir": str(tiny_corpus / "rirs"), "aug_prob": 0.8, "num_workers": 0,
        "musan_snr": {"noise": [0, 15], "music": [0, 15], "speech": [0, 15]},
        "babble_speakers": [1, 1], "noise_weighting": "files", "reverb_then_noise": True}}))
    monkeypatch.setattr("sys.argv", ["train.py"])  # not pytest's arguments
    cli = cli_main(["--config", str(config), "--model.backbone=ecapa_tdnn_tiny",
                    "--data.babble_speakers=[3, 7]", "--trainer.logger=false"], run=False)
    augment = cli.datamodule._waveform_augment()
    noise, reverb, both = augment.choices
    assert augment.p == pytest.approx(0.8)
    assert noise.snr == {"noise": (0.0, 15.0), "music": (0.0, 15.0), "speech": (0.0, 15.0)}
    assert noise.babble_speakers == (3, 7)  # the command line wins over the file
    assert isinstance(both, AugmentChain) and list(both.steps) == [reverb, noise]


def test_category_weighting_option(tiny_corpus):
    noise = _data(tiny_corpus, noise_weighting="categories",
                  musan_snr={"noise": (0, 15), "music": (5, 15)})._waveform_augment().choices[0]
    assert noise.probabilities == pytest.approx({"noise": 0.5, "music": 0.5})
    with pytest.raises(Exception, match="weighting"):
        _data(tiny_corpus, noise_weighting="speakers")._waveform_augment()


@pytest.mark.parametrize("speed_prob,perturbed", [(2.0 / 3.0, True), (0.0, False)])
def test_speed_prob_zero_keeps_speed_classes_but_perturbs_nothing(tiny_corpus, speed_prob,
                                                                  perturbed):
    data = SpeakerDataModule(str(tiny_corpus / "train"), batch_size=4, num_workers=0,
                             crop_seconds=0.5, speed_perturb=True, speed_prob=speed_prob)
    data.setup("fit")
    assert data.num_classes == 24  # 8 speakers x 3 speeds in the head either way
    labels = [int(label) for _ in range(3) for _, label in data.train_dataset]
    assert max(labels) < 24
    assert (max(labels) >= 8) == perturbed
