"""The reference's `colbert.utils.distributed`: `init(rank)` and `barrier(rank)`, over torch.distributed.

Training and indexing here set up their processes through colbert.infra.launcher; these are for scripts.
"""

from __future__ import annotations

import os

import torch

__all__ = ["init", "barrier", "ALREADY_INITALIZED"]

ALREADY_INITALIZED = False  # the reference's flag (its spelling); process groups are checked directly here


def init(rank: int) -> tuple[int, bool]:
    """Join the process group WORLD_SIZE (environment, default 1) describes; returns (nranks, distributed).

    With CUDA, this rank uses GPU `rank % device_count` and NCCL; otherwise gloo. Nothing happens for one rank.
    """
    nranks = int(os.environ.get("WORLD_SIZE", 1))
    distributed = nranks > 1
    if distributed and not torch.distributed.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(rank % torch.cuda.device_count())
        torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                                             init_method="env://")
    return nranks, distributed


def barrier(rank: int) -> None:
    """Wait for every rank (a no-op outside a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
