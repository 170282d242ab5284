"""Fixtures for the upstream parity tests of the model zoo.

A missing reference package skips, and a skip fails under ``CI`` (tests/conftest.py).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn as nn


@pytest.fixture(scope="session")
def wespeaker_module() -> Callable[[str], object]:
    """``wespeaker_module("campplus")`` -> ``wespeaker/models/campplus.py`` loaded by file
    (WeSpeaker's package ``__init__`` never runs); skips when wespeaker is not installed."""
    from r2n_audio.errors import ModelError
    from r2n_audio.inference.importers.upstream import wespeaker_models_module

    def load(name: str):
        try:
            return wespeaker_models_module(name)
        except ModelError as err:
            pytest.skip(str(err))

    return load


def _randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every BatchNorm's running statistics AND affine terms random (none is an identity by
    accident, so a skipped or misplaced BN changes the output); the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                if m.affine:
                    m.weight.copy_(1.0 + 0.3 * torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen))
    return model.eval()


@pytest.fixture(scope="session")
def randomize_batchnorm() -> Callable[..., nn.Module]:
    """The BatchNorm randomiser above, as a fixture."""
    return _randomize_batchnorm


def padded(utts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch ``(B, T_max, F)`` and lengths of a list of ``(T_i, F)`` features."""
    lengths = torch.tensor([u.size(0) for u in utts])
    batch = torch.zeros(len(utts), int(lengths.max()), utts[0].size(1))
    for i, u in enumerate(utts):
        batch[i, : u.size(0)] = u
    return batch, lengths


@pytest.fixture(scope="session")
def pad_batch() -> Callable[[list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """The zero-padding batcher above, as a fixture."""
    return padded
