"""Data-parallel training through ``torch.distributed`` as launched by ``torchrun``.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR; one process is the plain single-process
case. CPU uses the gloo backend; CUDA nccl for CUDA tensors (each process on the GPU of its local
rank) and gloo for the small CPU ones (:func:`all_sum`, :func:`broadcast`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_from_env(device: torch.device | None = None) -> DistInfo:
    """Join the process group torchrun describes (no-op when WORLD_SIZE is 1 or unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "gloo"
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def current() -> DistInfo:
    """The process group this process is in (single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())
    return DistInfo()


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64 on CPU; identity on one process)."""
    if not info.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def broadcast(obj: T | None, info: DistInfo) -> T:
    """Rank 0's ``obj`` on every rank (pickled; for small control data and batches)."""
    if not info.active:
        if obj is None:
            raise ValueError("nothing to broadcast")
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    value: T = box[0]
    return value


def shutdown(synchronise: bool = True) -> None:
    """Leave the process group. ``synchronise`` where every rank ends here together: a barrier
    first, while which gloo's worker threads let go of the last collective's tensors. A worker
    still holding one when Python finalises (the process group outlives the call while FSDP or
    DDP state refers to it) takes the GIL of a dying interpreter and aborts the process
    ("terminate called without an active exception", seen at exit under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()
