"""Embedding stores: npy folder, npz, Kaldi ark/scp (read back with kaldiio), and errors."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from r2n_audio.data.embeddings import (
    load_embeddings, npy_keys, save_embeddings, save_npy_embedding)
from r2n_audio.errors import DataFormatError


@pytest.fixture
def vectors(rng):
    return {f"spk{i}/u{j}": rng.standard_normal(8).astype(np.float32)
            for i in range(2) for j in range(3)}


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("name", ["emb", "emb.npz", "xvector.ark", "xvector.scp"])
def test_round_trip(tmp_path, vectors, name):
    save_embeddings(tmp_path / name, vectors)
    _assert_same(load_embeddings(tmp_path / name), vectors)


def test_npz_keys_that_collide_with_savez_arguments(tmp_path):
    vectors = {"file": np.ones(2, np.float32), "allow_pickle": np.zeros(2, np.float32)}
    save_embeddings(tmp_path / "e.npz", vectors)
    with np.load(tmp_path / "e.npz") as archive:  # numpy reads it back
        _assert_same({k: archive[k] for k in archive.files}, vectors)


def test_npy_layout(tmp_path, vectors):
    save_embeddings(tmp_path / "emb", vectors)
    assert (tmp_path / "emb/spk1/u2.npy").is_file()
    assert npy_keys(tmp_path / "emb") == set(vectors)
    assert not list((tmp_path / "emb").rglob(".*"))  # no temp files left


def test_kaldi_files_readable_by_kaldiio(tmp_path, vectors):
    save_embeddings(tmp_path / "x.ark", vectors)
    _assert_same(dict(kaldiio.load_scp(str(tmp_path / "x.scp"))), vectors)
    _assert_same(dict(kaldiio.load_ark(str(tmp_path / "x.ark"))), vectors)


def test_reads_stores_written_by_others(tmp_path, vectors):
    np.savez(tmp_path / "e.npz", **{k: v[None] for k, v in vectors.items()})  # (1, D) rows
    _assert_same(load_embeddings(tmp_path / "e.npz"), vectors)
    kaldiio.save_ark(str(tmp_path / "k.ark"), vectors, scp=str(tmp_path / "k.scp"))
    _assert_same(load_embeddings(tmp_path / "k.scp"), vectors)


def test_save_npy_embedding_rejects_escaping_keys(tmp_path):
    assert save_npy_embedding(tmp_path, "a/b", np.ones(3)) == tmp_path / "a/b.npy"
    for key in ["../x", "/abs", "a b", ""]:
        with pytest.raises(ValueError):
            save_npy_embedding(tmp_path, key, np.ones(3))


def test_errors(tmp_path, rng):
    with pytest.raises(DataFormatError, match="not found"):
        load_embeddings(tmp_path / "missing")
    (tmp_path / "e.txt").write_text("x")
    with pytest.raises(DataFormatError, match="unknown embedding format"):
        load_embeddings(tmp_path / "e.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no embeddings"):
        load_embeddings(tmp_path / "empty")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="cannot read"):
        load_embeddings(tmp_path / "bad.npz")
    np.savez(tmp_path / "dims.npz", a=np.ones(3), b=np.ones(4))
    with pytest.raises(DataFormatError, match="differ in dimension"):
        load_embeddings(tmp_path / "dims.npz")
    np.savez(tmp_path / "nan.npz", a=np.array([1.0, np.nan]))
    with pytest.raises(DataFormatError, match="NaN"):
        load_embeddings(tmp_path / "nan.npz")
    np.savez(tmp_path / "mat.npz", a=np.ones((2, 3)))
    with pytest.raises(DataFormatError, match="expected a non-empty vector"):
        load_embeddings(tmp_path / "mat.npz")


@pytest.mark.parametrize("key", ["spk/", "a//b", ".", "a/./b", "a/../b", "/abs", "spk/.u1", ""])
def test_npy_keys_that_would_share_or_escape_a_file_are_refused(tmp_path, key) -> None:
    with pytest.raises(ValueError, match="plain relative paths"):
        save_npy_embedding(tmp_path, key, np.ones(3))
    assert list(tmp_path.rglob("*")) == []


def test_plain_keys_map_to_distinct_files(tmp_path) -> None:
    for key in ("spk", "spk/u1", "spk/u1.npy", ".spk/u1"):
        save_npy_embedding(tmp_path, key, np.ones(3))
    assert sorted(load_embeddings(tmp_path)) == sorted(["spk", "spk/u1", "spk/u1.npy", ".spk/u1"])
