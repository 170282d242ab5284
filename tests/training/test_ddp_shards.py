"""DDP from tar shards on CPU (gloo, 2 processes): one epoch reads every training utterance
exactly once across the ranks, each rank making the same number of steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from r2n_audio.data.manifests import read_utt2spk
from r2n_audio.data.shards import write_shards

HERE = Path(__file__).parent


def test_ddp_two_cpu_processes_from_shards_read_each_utterance_once(tiny_corpus, tmp_path):
    write_shards(tiny_corpus / "train", tmp_path / "shards", shard_size=6)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(HERE / "ddp_shards_script.py"),
                           str(tmp_path / "shards" / "shards.txt"), str(tmp_path)],
                          cwd=tmp_path, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"keys_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 4  # 32 utts / 2 ranks / 4
    keys = [k for rank in ranks for batch in rank["batches"] for k in batch]
    assert sorted(keys) == sorted(read_utt2spk(tiny_corpus / "train" / "utt2spk"))
    assert all(np.isfinite(rank["losses"]).all() for rank in ranks)
