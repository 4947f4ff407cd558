"""Data-parallel training under torchrun, on the CPU with gloo and two processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from serecodec.checkpoint import load_checkpoint
from serecodec.distributed import World
from serecodec.trainer import TrainConfig, train
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parent.parent


def test_shards_of_a_batch_cover_it_once():
    batch = torch.arange(32)
    shards = [World(rank=r, size=4).shard(batch) for r in range(4)]
    assert torch.equal(torch.cat(shards), batch) and {len(s) for s in shards} == {8}
    assert torch.equal(World().shard(batch), batch)


def test_two_processes_train_resumably(digits, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), "2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]     # includes the check that replicas agree
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(r["processes"] == 2 for r in log)
    assert log[-1]["step"] == 2 * (256 // 32)              # global batches, as in one process
    assert log[-1]["valid_elbo"] > log[0]["valid_elbo"]
    blob = load_checkpoint(tmp_path / "checkpoint.pt")
    assert blob["epoch"] == 2 and not any(k.startswith("module.") for k in blob["model"])

    # the checkpoint of a data-parallel run resumes in one process
    cfg = TrainConfig(epochs=3, batch_size=32, warmup_levels=0, valid_limit=44, threads=1, learning_rate=3e-3)
    record = train(tiny_config(), cfg, digits[:256], digits[256:], tmp_path, log=lambda _: None)
    assert record["epoch"] == 3 and record["step"] == 3 * 8
