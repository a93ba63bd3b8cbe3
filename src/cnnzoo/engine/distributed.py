"""Data-parallel training across processes (PyTorch DDP), started by ``torchrun``.

``torchrun --nproc_per_node=N -m cnnzoo train ...`` sets RANK, LOCAL_RANK and
WORLD_SIZE in each process's environment; ``init`` joins the process group
(NCCL on GPUs, gloo on CPU) and pins each process to its GPU. Without those
variables everything here is a no-op for the single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process's index among all processes
    local_rank: int = 0  # its index on this machine (= its GPU)
    size: int = 1  # number of processes

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init(device_type: str) -> World:
    """Join the torchrun process group if there is one; return this process's place in it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), size)
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return world


def shutdown(clean: bool) -> None:
    """Leave the process group; after a clean run all together (a rank that leaves early can abort its peers'
    teardown), after an error at once (the peers may never reach a barrier)."""
    if dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce(values: torch.Tensor, world: World, op: str = "sum") -> torch.Tensor:
    """``values`` reduced over every process (in place); unchanged in a single process."""
    if world.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return values


def gather_objects(obj, world: World) -> list:
    """Every process's ``obj``, in rank order (a one-element list in a single process)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, world: World):
    """Rank 0's ``obj``, on every process."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
