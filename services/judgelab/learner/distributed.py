"""Data-parallel training through ``torch.distributed`` as launched by ``torchrun``.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR; one process is the plain single-process
case. CPU uses the gloo backend; CUDA nccl for CUDA tensors (each process on the GPU of its local
rank) and gloo for the small CPU ones (:func:`all_sum`, :func:`broadcast`).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import TypeVar

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
    """Rank 0's ``obj`` on every rank (pickled; for small control data and batches).

    Its two CPU tensors (size, bytes) stay referenced here until the next call: gloo's worker
    thread must never drop the last reference to a Python-made tensor after the interpreter
    began to exit, or while a process group is destroyed under the GIL (see :func:`shutdown`).
    """
    if not info.active:
        if obj is None:
            raise ValueError("nothing to broadcast")
        return obj
    if info.is_main:
        payload = pickle.dumps(obj)
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8).clone()
        size = torch.tensor([data.numel()], dtype=torch.int64)
    else:
        size = torch.zeros(1, dtype=torch.int64)
    dist.broadcast(size, src=0)
    if not info.is_main:
        data = torch.empty(int(size.item()), dtype=torch.uint8)
    dist.broadcast(data, src=0)
    _HELD[:] = [size, data]
    value: T = pickle.loads(data.numpy().tobytes())
    return value


def shutdown(synchronise: bool = True) -> None:
    """Leave the process group; ``synchronise`` where every rank ends here together.

    Synchronising is a last :func:`broadcast`, whose tensors this module holds. gloo's worker
    thread releases a finished collective's tensors after the caller got its result; when it
    holds the last reference to a Python-made tensor it needs the GIL. If the interpreter is
    exiting by then, the process aborts ("terminate called without an active exception");
    if the process group is being destroyed (when FSDP or DDP state lets go of it, later than
    this call) the two wait for each other. Seen at exit under torchrun; a PyTorch issue
    (pytorch/pytorch#56297). Not after a failure: the other ranks may never come.
    """
    if dist.is_available() and dist.is_initialized():
        if synchronise:
            broadcast(True, current())
        dist.destroy_process_group()


_HELD: list[torch.Tensor] = []  # the last broadcast's tensors (see broadcast)
