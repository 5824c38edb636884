"""The few torch.distributed calls training makes, each a no-op when training runs as one process.

Process groups are created by `colbert.infra.launcher.launch`; the code here only asks whether one exists.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, rank: int) -> torch.device:
    """The device of a rank: its own GPU (LOCAL_RANK under torchrun, else the rank), or the shared CPU."""
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def wrap(module: nn.Module, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    """DistributedDataParallel around `module` when a process group exists, else the module itself.

    DDP broadcasts rank 0's weights at construction, so every rank starts from the same model.
    """
    if not is_distributed():
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)


@contextlib.contextmanager
def no_sync(module: nn.Module, skip: bool) -> Iterator[None]:
    """Hold back DDP's gradient all-reduce for this backward (all micro-batches but the last)."""
    if skip and isinstance(module, nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        yield


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (`[obj]` in a single process). Every rank must call it."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise mean of a list of numbers over ranks (the list itself in a single process)."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def barrier() -> None:
    if is_distributed():
        dist.barrier()
