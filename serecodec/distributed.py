"""Data-parallel training across processes (``torchrun``): who am I, my share of a batch.

Each process draws the same binarization and permutation (they are seeded by the epoch) and
takes its own contiguous slice of every global batch, so the effective batch size, and with it
every hyperparameter, is the same as in one process. DistributedDataParallel averages the
gradients. NCCL on GPUs, gloo on CPUs (the CPU path is what the tests exercise).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False    # this module created the process group and will destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, name: str) -> torch.device:
        """The device this process trains on: its own GPU under torchrun."""
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda" and device.index is None and self.distributed:
            device = torch.device("cuda", self.local_rank)
        return device

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global batch (the batch size must divide evenly)."""
        if not self.distributed:
            return batch
        if batch.shape[0] % self.size:
            raise ValueError(f"batch of {batch.shape[0]} does not split over {self.size} processes")
        share = batch.shape[0] // self.size
        return batch[self.rank * share:(self.rank + 1) * share]

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def agree(self, flag: bool, device: torch.device) -> bool:
        """The main process's decision, made known to all (e.g. to stop after a time limit)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1 if flag else 0], device=device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def check_replicas(self, model: torch.nn.Module) -> None:
        """Raise if the processes' weights have drifted apart (they must stay bit-identical)."""
        if not self.distributed:
            return
        with torch.no_grad():
            digest = torch.stack([p.double().sum() for p in model.parameters()])
        low, high = digest.clone(), digest.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError("data-parallel replicas hold different weights")

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.barrier()          # no process tears the group down while another still uses it
            dist.destroy_process_group()


def leave(code: int = 0) -> None:
    """End a data-parallel process without the interpreter's teardown.

    With torch 2.13 on the CPU, a process that trained under DDP with gloo aborts in about half
    the runs while the interpreter shuts down ("terminate called without an active exception":
    a gloo worker thread outlives it), even after destroy_process_group. Everything is written
    and flushed by then, so a distributed process leaves with os._exit; one process returns.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def join_world(device_name: str = "auto") -> World:
    """Join the process group that ``torchrun`` describes in the environment; one process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or not dist.is_available():
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        gpu = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        if gpu:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if gpu else "gloo")
        owns = True
    return World(rank=rank, size=dist.get_world_size(), local_rank=local_rank, owns_group=owns)
