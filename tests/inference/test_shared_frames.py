"""Windows embedded from shared frame-level features (:meth:`Embedder.embed_windows`).

References: pyannote.audio's own ``WeSpeakerResNet34`` code (its ``forward_frames`` over the
block, its ``forward_embedding`` over a window's span of the map, the span worked out by hand),
torchaudio's ``sliding_window_cmn`` (Kaldi's sliding CMN), :meth:`Embedder.embed_batch` for a
window that is its whole block (exact by construction), and hand-worked frame indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from r2n_audio.errors import AudioError
from r2n_audio.features.frontend import Frontend
from r2n_audio.inference.embedder import Embedder
from r2n_audio.inference.importers import import_model
from r2n_audio.inference.shared_frames import (plan_blocks, pool_windows, sliding_cmn,
                                               window_frames)
from r2n_audio.models import create_model, list_models

from .test_import_pyannote import pyannote_folder

sliding_window_cmn = pytest.importorskip("torchaudio.functional").sliding_window_cmn
from .upstream_models import cosine_gap, randomize_all, speech_crop

RATE = 16000


def _embedder(name: str, seed: int = 0) -> Embedder:
    return Embedder(randomize_all(create_model(name), seed), Frontend(), device="cpu")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> torch.Tensor:
    """12 s of pyannote.audio's real two-speaker recording."""
    path = speech_crop(tmp_path_factory.mktemp("speech"), start=2.0, seconds=12.0)
    return torch.from_numpy(sf.read(path, dtype="float32")[0])


@pytest.mark.parametrize("name", list_models("*tiny*"))
def test_forward_is_forward_pooled_of_forward_frames(name: str) -> None:
    """Every family's map has ``ceil(T / frame_stride)`` frames and its head pools it."""
    torch.manual_seed(0)
    model = randomize_all(create_model(name))
    feats = torch.randn(2, 131, model.feat_dim)
    lengths = torch.tensor([131, 97])
    with torch.no_grad():
        frames = model.forward_frames(feats, lengths)
        stride = model.frame_stride
        assert frames.shape[-1] == -(-131 // stride)
        pooled = model.forward_pooled(frames, -(-lengths // stride))
        assert torch.allclose(pooled, model(feats, lengths), atol=1e-5, rtol=1e-4)


def test_window_frames_hand_worked() -> None:
    # 1 s block, frames every 160 samples of 400 (Kaldi): 98 frames. Window [0.1, 0.6) s:
    # frames starting at >= 1600 (10) up to the last ending by 9600: 1 + (9600 - 400) // 160 = 58.
    a, b = window_frames(np.array([1600, 0]), np.array([9600, 16000]), 160, 16000, 98, None)
    assert a.tolist() == [10, 0] and b.tolist() == [58, 98]
    # Frames 2, 3 and 7 dropped as silence: the front-end's axis counts kept frames only.
    kept = np.ones(10, dtype=bool)
    kept[[2, 3, 7]] = False
    a, b = window_frames(np.array([160, 640]), np.array([2000, 1840]), 160, 1840, 10, kept)
    assert a.tolist() == [1, 2] and b.tolist() == [7, 7]


def test_blocks_cover_each_window_once_within_bounds(rng: np.random.Generator) -> None:
    starts = np.sort(rng.integers(0, 600 * RATE, 300))
    bounds = np.stack([starts, starts + 24000], 1)
    block, margin = 10 * RATE, 2 * RATE
    blocks = plan_blocks(bounds, block, margin)
    owner = np.concatenate([blk.windows for blk in blocks])
    assert sorted(owner.tolist()) == list(range(len(bounds)))
    for blk in blocks:
        assert (bounds[blk.windows, 0] >= blk.start).all()
        assert (bounds[blk.windows, 1] <= blk.end).all()
        assert blk.end - blk.start <= block + 24000 + 2 * margin


def test_sliding_cmn_is_kaldis(rng: np.random.Generator) -> None:
    feats = torch.from_numpy(rng.standard_normal((2, 300, 7)).astype(np.float32))
    lengths = torch.tensor([300, 120])
    for width in (150, 151, 400):
        ours = sliding_cmn(feats, lengths, width)
        for row, n in enumerate(lengths.tolist()):
            theirs = sliding_window_cmn(feats[row, :n], cmn_window=width, center=True)
            assert torch.allclose(ours[row, :n], theirs, atol=1e-5)
            assert not ours[row, n:].any()


@pytest.mark.parametrize("cmn", ["block", "sliding"])
def test_resnet34_windows_match_pyannotes_model(cmn: str, speech: torch.Tensor,
                                                tmp_path: Path) -> None:
    """An imported WeSpeaker ResNet34 (random weights and BN statistics): each window is
    pyannote's ``forward_embedding`` of pyannote's ``forward_frames`` map over the whole
    region (features mean-normalised over it, or Kaldi-sliding over 1.5 s by torchaudio),
    sliced over the window's frames; with block CMN the whole region is pyannote's
    ``forward``."""
    upstream = pyannote_folder(tmp_path / "pyannote").resnet
    embedder = Embedder.from_pretrained(import_model("pyannote", tmp_path / "pyannote"),
                                        device="cpu")
    assert embedder.embedding_mean is None and not embedder.l2_normalize
    from r2n_audio.diarization.segments import sliding_windows

    region = speech[:8 * RATE]
    windows = sliding_windows([(0.0, 8.0)], 1.5, 0.75)  # one span: one block
    if cmn == "block":  # and a window that is the whole block
        windows = np.concatenate([windows, [[0.0, 8.0]]])
    ours = embedder.embed_windows(region, windows, cmn=cmn)
    feats, frames = embedder.frontend(region[None])
    assert int(frames) == 1 + (8 * RATE - 400) // 160  # real speech: no frame dropped
    if cmn == "sliding":
        feats = sliding_window_cmn(feats[0], cmn_window=150, center=True)[None]
    with torch.no_grad():
        frame_map = upstream.forward_frames(feats.clone())
        for row, (start, end) in enumerate(windows):
            a = int(np.ceil(start * RATE / 160))  # first frame starting in the window
            b = a + 1 + (int((end - start) * RATE) - 400) // 160  # its frames alone
            span = frame_map[..., a // 8: -(-b // 8)]
            theirs = upstream.forward_embedding(span)[1][0].numpy()
            assert cosine_gap(ours[row], theirs) <= 1e-5
            assert np.allclose(ours[row], theirs, atol=1e-4 * np.abs(theirs).max())
        whole = upstream(feats.clone())[1][0].numpy()
    if cmn == "block":
        assert np.allclose(ours[-1], whole, atol=1e-4 * np.abs(whole).max())


@pytest.mark.parametrize("name", ["ecapa_tdnn_tiny", "campplus_tiny", "eres2net_tiny"])
def test_window_that_is_its_block_equals_embed_batch(name: str, speech: torch.Tensor) -> None:
    """Global-context trunks too; digital silence inside the region is dropped as
    :meth:`embed_batch` drops it, and a lone short region is one block."""
    embedder = _embedder(name)
    wave = speech.clone()
    wave[int(5.2 * RATE): int(5.9 * RATE)] = 0.0
    regions = [(0.5, 7.0), (8.0, 8.6)]
    ours = embedder.embed_windows(wave, np.array(regions), cmn="block")
    cut = [wave[int(a * RATE): int(b * RATE)] for a, b in regions]
    for row, piece in enumerate(cut):
        theirs = embedder.embed_batch(piece[None])[0]
        assert np.allclose(ours[row], theirs, atol=1e-5 * np.abs(theirs).max()), row


def test_sliding_cmn_of_a_one_window_region_is_embed_batch(speech: torch.Tensor) -> None:
    """A speech region of one window: the centred stretch covers it all (the usual case of a
    short region), next to a long region whose windows set the stretch to 1.5 s."""
    from r2n_audio.diarization.segments import sliding_windows

    embedder = _embedder("ecapa_tdnn_tiny")
    windows = sliding_windows([(0.0, 4.0), (5.0, 6.5), (8.0, 8.9)], 1.5, 0.75)
    ours = embedder.embed_windows(speech, windows)
    for row in (len(windows) - 2, len(windows) - 1):
        a, b = (windows[row] * RATE).round().astype(int)
        theirs = embedder.embed_batch(speech[a:b][None])[0]
        assert np.allclose(ours[row], theirs, atol=1e-5 * np.abs(theirs).max()), row


@pytest.mark.parametrize("name, gap", [("resnet34_tiny", 1e-5), ("ecapa_tdnn_tiny", 1e-3)])
def test_blocks_of_a_long_region_agree_with_one_block(name: str, gap: float,
                                                      speech: torch.Tensor) -> None:
    """Small blocks (4 s + 2 s margins, starts on the trunk's stride grid) against one 12 s
    block: a local trunk (ResNet) gives the same windows, ECAPA's squeeze-excitation (global
    over the block) nearly; and no block longer than its bound reaches the front-end."""
    from r2n_audio.diarization.segments import sliding_windows

    embedder = _embedder(name)
    windows = sliding_windows([(0.0, 12.0)], 1.5, 0.75)
    whole = embedder.embed_windows(speech, windows)
    seen: list[int] = []
    forward = embedder.frontend.forward
    embedder.frontend.forward = lambda waves, lengths=None: (seen.append(waves.shape[1])
                                                             or forward(waves, lengths))
    blocked = embedder.embed_windows(speech, windows, block_seconds=4.0, margin_seconds=2.0)
    assert len(seen) >= 2
    assert max(seen) <= (4.0 + 1.5 + 2 * 2.0) * RATE
    cos = (whole * blocked).sum(1) / np.linalg.norm(whole, axis=1) / np.linalg.norm(blocked, axis=1)
    assert 1 - cos.min() < gap, cos.min()


def test_bad_windows_are_reported_not_embedded(speech: torch.Tensor) -> None:
    embedder = _embedder("ecapa_tdnn_tiny")
    wave = speech.clone()
    wave[3 * RATE: 5 * RATE] = 0.0
    wave[int(9.5 * RATE)] = float("nan")
    windows = np.array([[0.0, 1.5], [3.2, 4.7], [9.0, 9.9], [10.5, 12.0]])
    emb, valid = embedder.embed_windows(wave, windows, return_valid=True)
    assert valid.tolist() == [True, False, False, True]
    assert not emb[~valid].any() and np.isfinite(emb).all()
    good = embedder.embed_batch(wave[int(10.5 * RATE): 12 * RATE][None])[0]
    assert np.allclose(emb[3], good, atol=1e-5 * np.abs(good).max())
    with pytest.raises(AudioError, match=r"window 1: no signal.*\(2 of 4 rows"):
        embedder.embed_windows(wave, windows)


@pytest.mark.parametrize("name", ["ecapa_tdnn_tiny", "resnet34_tiny"])
def test_pooled_windows_are_the_heads_of_their_spans(name: str) -> None:
    """Windows pooled from one map (with the pooling's shared per-frame work, where the model
    has some) equal the model's own head on each span cut out alone."""
    torch.manual_seed(0)
    model = randomize_all(create_model(name)).eval()
    with torch.no_grad():
        frame_map = model.forward_frames(torch.randn(2, 120, model.feat_dim))
        shared = model.shared_pooling(frame_map) if hasattr(model, "shared_pooling") else None
        assert (shared is not None) == name.startswith("ecapa")
        stride = model.frame_stride
        rows, a, b = np.array([0, 0, 1, 1]), np.array([0, 13, 40, 7]), np.array([50, 120, 97, 8])
        got = pool_windows(model, frame_map, rows, a, b, shared)
        for k in range(len(rows)):
            lo, hi = a[k] // stride, -(-b[k] // stride)
            alone = model.forward_pooled(frame_map[rows[k]: rows[k] + 1, ..., lo:hi])[0]
            assert torch.allclose(got[k], alone, atol=1e-5, rtol=1e-4), k
