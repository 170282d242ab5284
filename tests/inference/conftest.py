"""Fixtures for inference tests: a SpeechBrain ECAPA pretrained folder with random weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .upstream_models import randomize_all

HYPERPARAMS = """\
# spkrec-ecapa-voxceleb layout, small channels
n_mels: 80
pretrained_path: {folder}
emb_dim: 96

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [128, 128, 128, 128, 384]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 64
    lin_neurons: !ref <emb_dim>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
"""


@pytest.fixture(scope="session")
def speechbrain_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``spkrec-ecapa-voxceleb``-style folder with a random C=128 SpeechBrain ECAPA."""
    ecapa = pytest.importorskip("speechbrain.lobes.models.ECAPA_TDNN")
    folder = tmp_path_factory.mktemp("sb_ecapa")
    model = randomize_all(ecapa.ECAPA_TDNN(80, channels=[128, 128, 128, 128, 384],
                                       attention_channels=64, lin_neurons=96))
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    gen = torch.Generator().manual_seed(5)
    torch.save({"count": 10, "glob_mean": torch.randn(1, 96, generator=gen),
                "glob_std": torch.ones(1, 96)}, folder / "mean_var_norm_emb.ckpt")
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS.format(folder=folder))
    return folder


@pytest.fixture(scope="session")
def tiny_bundle_factory(tmp_path_factory: pytest.TempPathFactory):
    """``factory(model="ecapa_tdnn_tiny", frontend="kaldi", mean=False, l2=False) -> Path`` of a
    saved bundle with random weights and BatchNorm statistics."""
    from r2n_audio.features.frontend import Frontend
    from r2n_audio.features.speechbrain_fbank import SpeechBrainFrontend
    from r2n_audio.inference.bundle import make_bundle, save_bundle
    from r2n_audio.models import create_model

    folder = tmp_path_factory.mktemp("bundles")

    def factory(model: str = "ecapa_tdnn_tiny", frontend: str = "kaldi", mean: bool = False,
                l2: bool = False) -> Path:
        path = folder / f"{model}-{frontend}-{int(mean)}{int(l2)}.pt"
        if not path.exists():
            net = randomize_all(create_model(model))
            fe = Frontend() if frontend == "kaldi" else SpeechBrainFrontend()
            vec = torch.randn(net.embed_dim, generator=torch.Generator().manual_seed(3))
            bundle = make_bundle(model, {}, net.state_dict(), fe.config(),
                                 embedding_mean=vec if mean else None, l2_normalize=l2)
            save_bundle(bundle, path)
        return path

    return factory
