"""Shared fixtures: a seeded RNG, a wav factory writing into ``tmp_path``, a tiny corpus.

Two rules hold for every test:
- ``torch.set_num_threads(1)``: two cores shared with other work make threaded tests crawl.
- A test skipped because a reference package is missing *fails* when ``CI`` is set
  (torchaudio's rule): no skipped test counts as passing. Tests marked ``gpu`` are exempt. A
  whole module skipped at collection (module-level ``importorskip``) fails too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped while collected (a module-level ``pytest.importorskip``) fails under CI
    too: the per-test hook below never sees those, so whole files would vanish silently."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = (f"skipped while collecting under CI, which counts as a failure: "
                           f"{report.longrepr}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI")
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("gpu") is None
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which counts as a failure: {report.longrepr}"


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator, fresh for each test."""
    return np.random.default_rng(1234)


@pytest.fixture
def make_wav(tmp_path: Path, rng: np.random.Generator):
    """Factory writing a test signal to ``tmp_path`` and returning its path.

    ``make_wav(name, seconds=1.0, sr=16000, channels=1, subtype="PCM_16", data=None)``;
    ``data`` (N,) or (N, C) float in [-1, 1] overrides the default noisy two-tone signal.
    """

    def factory(
        name: str = "a.wav",
        seconds: float = 1.0,
        sr: int = 16000,
        channels: int = 1,
        subtype: str = "PCM_16",
        data: np.ndarray | None = None,
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            t = np.arange(int(round(seconds * sr))) / sr
            tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1330 * t)
            data = tone + 0.05 * rng.standard_normal(t.shape)
            if channels > 1:
                data = np.stack([data * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
        sf.write(path, np.asarray(data, dtype=np.float32), sr, subtype=subtype)
        return path

    return factory


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus (8 train + 4 test speakers x 4 utterances, 1-2 s), made once.

    Layout as ``r2n-audio make-corpus`` writes it: ``wav.scp``, ``utt2spk``, ``spk2utt`` at the
    top, ``train/`` and ``test/`` data dirs, ``trials.txt`` over the held-out speakers.
    """
    from r2n_audio.data.synthetic import make_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    make_corpus(out, n_train_speakers=8, n_test_speakers=4, utts_per_speaker=4, seed=0,
                min_seconds=1.0, max_seconds=2.0)
    return out
