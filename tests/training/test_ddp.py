"""DDP on CPU (gloo, 2 processes) follows the same loss trajectory as one process with twice
the batch (BatchNorm on running statistics in both: CPU has no SyncBatchNorm)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

HERE = Path(__file__).parent


def _script():
    spec = importlib.util.spec_from_file_location("ddp_script", HERE / "ddp_script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ddp_two_cpu_processes_match_one_process_with_double_batch(tiny_corpus, tmp_path):
    batch = 4
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(HERE / "ddp_script.py"), str(tiny_corpus),
                    str(tmp_path), str(batch)], check=True, cwd=tmp_path, env=env, timeout=300,
                   capture_output=True)
    ranks = [json.loads((tmp_path / f"losses_rank{r}.json").read_text()) for r in (0, 1)]
    ddp = np.mean(ranks, axis=0)  # each rank logs the mean over its half of the batch

    script = _script()
    data, module = script.build(tiny_corpus, 2 * batch)
    record = script.RecordLoss()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[record, script.FreezeBatchNorm()],
                         num_sanity_val_steps=0)
    trainer.fit(module, data)
    assert len(ddp) == len(record.losses) == 2
    np.testing.assert_allclose(ddp, record.losses, rtol=1e-4)
    assert record.losses[1] != record.losses[0]  # the second step saw the updated weights
