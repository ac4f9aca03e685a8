"""Data-parallel training across processes (``torchrun``): set-up and the few collectives the
trainer needs. With one process every method is a no-op and nothing is initialised.

Launch: ``torchrun --nproc-per-node N -m rnnseq train CONFIG`` (or the ``rnnseq`` entry point
under torchrun). The backend is NCCL when training on CUDA, gloo otherwise. ``train.batch_size``
is per process; each step every process takes its share of one global batch of
``batch_size x N``, and the loss is normalised by the global token count, so N processes with
batch B follow the same trajectory as one process with batch N x B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                   int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum a few numbers over all processes."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (pickled between our own processes)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's ``obj``, on every rank."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def shard(self, index: list[int]) -> list[int]:
        """This process's share of a global batch."""
        return index[self.rank :: self.world] if self.enabled else index
