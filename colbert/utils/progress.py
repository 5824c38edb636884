"""progress(): a tqdm bar on the main process only, on or off with the log level."""

from __future__ import annotations

import logging
import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
logger = logging.getLogger("colbert")


def is_main_process() -> bool:
    """True on rank 0 of a torch.distributed job, and in any process that is not part of one."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except (ImportError, RuntimeError):
        pass
    return int(os.environ.get("RANK", "0")) == 0


def progress(
    items: Iterable[T], desc: str, total: int | None = None, enabled: bool | None = None, unit: str = "it"
) -> Iterable[T]:
    """Wrap `items` in a tqdm bar.

    `enabled=None` shows the bar unless the 'colbert' logger is set to ERROR or above
    (`logging.getLogger("colbert").setLevel(logging.ERROR)` silences every bar); bars only show on the main process.
    """
    if enabled is None:
        enabled = logger.isEnabledFor(logging.WARNING)
    return tqdm(items, desc=desc, total=total, unit=unit, disable=not (enabled and is_main_process()),
                dynamic_ncols=True, leave=False)
