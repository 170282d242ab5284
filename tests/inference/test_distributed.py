"""``r2n-audio embed`` across processes: duration-balanced disjoint shares, and 2 CPU ranks
(gloo, as torchrun launches them) giving one process's output with each file embedded once."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp

from r2n_audio.cli import main
from r2n_audio.data.embeddings import load_embeddings
from r2n_audio.inference.distributed import balanced_shares


def test_balanced_shares_hand_worked():
    # Longest first onto the lighter share: 9 -> r0, 7 -> r1, 5 -> r1 (7 < 9), 4 -> r0
    # (9 < 12), 2 -> r1 (12 < 13): loads 13 and 14.
    assert balanced_shares([5, 9, 2, 7, 4], 2) == [[1, 4], [0, 2, 3]]
    assert balanced_shares([1.0], 3) == [[0], [], []]


@pytest.mark.parametrize("world", [2, 3, 8])
def test_shares_are_disjoint_and_within_ten_percent(world):
    seconds = np.random.default_rng(world).gamma(2.0, 4.0, size=400)  # VoxCeleb-like spread
    shares = balanced_shares(seconds.tolist(), world)
    assert sorted(i for s in shares for i in s) == list(range(400))
    loads = np.array([seconds[s].sum() for s in shares])
    assert np.abs(loads / loads.mean() - 1).max() < 0.10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, argv: list[str], out: str) -> None:
    """One torchrun-like rank: the environment torchrun sets, then the CLI in process."""
    import torch

    from r2n_audio.inference.embedder import Embedder

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    original, embedded = Embedder.iter_files, []

    def recording(self, paths, *args, **kwargs):
        embedded.extend(str(p) for p in paths)
        return original(self, paths, *args, **kwargs)

    Embedder.iter_files = recording
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    Path(out, f"rank{rank}.json").write_text(json.dumps(
        {"code": code, "stdout": printed.getvalue(), "embedded": embedded}))


@pytest.mark.parametrize("fmt", ["npz", "ark"])
def test_two_ranks_equal_one_process_each_file_once(make_wav, tmp_path, tiny_bundle_factory,
                                                    fmt):
    for i in range(9):
        make_wav(f"audio/spk{i % 3}/u{i}.wav", seconds=0.5 + 0.3 * i)
    bundle = tiny_bundle_factory()
    common = ["embed", str(tmp_path / "audio"), "--model", str(bundle), "--device", "cpu",
              "--quiet"]
    assert main([*common, "-o", str(tmp_path / f"one.{fmt}")]) == 0
    argv = [*common, "-o", str(tmp_path / f"two.{fmt}")]
    # fork: the ranks start at once instead of re-importing torch (torchrun would spawn them)
    mp.start_processes(_rank, args=(2, _free_port(), argv, str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["code"] for r in ranks] == [0, 0]
    assert ranks[0]["stdout"].startswith("embed: 9 done, 0 failed, 0 skipped")
    assert ranks[1]["stdout"] == ""  # only rank 0 reports, with the totals
    embedded = ranks[0]["embedded"] + ranks[1]["embedded"]
    assert sorted(embedded) == sorted(str(p) for p in (tmp_path / "audio").rglob("*.wav"))
    assert ranks[0]["embedded"] and ranks[1]["embedded"]  # both ranks worked
    one, two = load_embeddings(tmp_path / f"one.{fmt}"), load_embeddings(tmp_path / f"two.{fmt}")
    assert sorted(one) == sorted(two)
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=0, atol=1e-5)
    assert not (tmp_path / f"two.{fmt}.partial").exists()
