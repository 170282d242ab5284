"""Long files are decoded, mixed down and resampled in blocks (issue 11 item 13): the block path
equals whole-file loading, and an hour of 48 kHz stereo stays far below 2 GB (slow)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as taf

from r2n_audio.audio import load_audio


def _whole_file(path: Path, sample_rate: int) -> torch.Tensor:
    """The reference: soundfile decodes everything, channels averaged, torchaudio resamples."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    return wave if sr == sample_rate else taf.resample(wave, sr, sample_rate)


@pytest.mark.parametrize("sr,channels,subtype", [(48000, 2, "PCM_16"), (44100, 1, "FLOAT"),
                                                 (8000, 3, "PCM_24"), (16000, 2, "PCM_16"),
                                                 (22050, 1, "PCM_16")])
@pytest.mark.parametrize("block_frames", [4093, 48000])
def test_blocks_equal_whole_file(make_wav, sr, channels, subtype, block_frames):
    path = make_wav(f"long{sr}.wav", seconds=3.3, sr=sr, channels=channels, subtype=subtype)
    blocked = load_audio(path, block_frames=block_frames)
    expected = _whole_file(path, 16000).clamp(-1, 1)
    assert blocked.shape == expected.shape
    assert float((blocked - expected).abs().max()) <= 1e-5


def test_stretch_reads_in_blocks_equal_one_read(make_wav):
    path = make_wav("stretch.wav", seconds=4.0, sr=48000, channels=2)
    one = load_audio(path, offset=1.25, duration=2.0)
    many = load_audio(path, offset=1.25, duration=2.0, block_frames=1000)
    assert float((one - many).abs().max()) <= 1e-5 and one.numel() == 32000


_PEAK = """
import resource, sys
import numpy as np
from r2n_audio.audio import load_audio
from r2n_audio.inference.embedder import Embedder
wave = load_audio(sys.argv[1])
load_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
emb = Embedder.from_pretrained(sys.argv[2], device="cpu").embed_file(sys.argv[1])
assert np.isfinite(emb).all() and wave.numel() == 3600 * 16000
print(load_rss / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


@pytest.mark.slow
def test_hour_of_48k_stereo_peak_memory(tmp_path):
    """README promise: an hour-long file embeds in < 2 GB (it peaked at 7.3 GB)."""
    from r2n_audio.features.frontend import Frontend
    from r2n_audio.inference.bundle import make_bundle, save_bundle
    from r2n_audio.models import create_model

    bundle = tmp_path / "tiny.pt"
    save_bundle(make_bundle("ecapa_tdnn_tiny", {}, create_model("ecapa_tdnn_tiny").state_dict(),
                            Frontend().config()), bundle)
    path = tmp_path / "hour.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 48000, 2, "PCM_16") as f:
        for _ in range(60):  # a minute at a time
            f.write((0.1 * rng.standard_normal((48000 * 60, 2))).astype(np.float32))
    done = subprocess.run([sys.executable, "-c", _PEAK, str(path), str(bundle)],
                          capture_output=True, text=True, check=True, timeout=1800)
    load_mb, embed_mb = map(float, done.stdout.split())
    print(f"peak RSS: load {load_mb:.0f} MB, load + embed {embed_mb:.0f} MB")
    assert embed_mb < 2048
