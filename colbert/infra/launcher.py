"""launch(fn, ...): run `fn(rank, nranks, *args)` on one process or many, and hand back rank 0's result.

Three ways to run, chosen here and nowhere else:

| situation                                  | what happens                                                      |
|--------------------------------------------|-------------------------------------------------------------------|
| started by `torchrun` (WORLD_SIZE is set)  | this process is one rank: join the process group from the env     |
| nranks == 1                                | call fn in this process, no process group                         |
| nranks > 1                                 | spawn nranks processes that meet over TCP on 127.0.0.1            |

A worker's exception is raised again in the caller with its own type (a ValueError in rank 1 is a ValueError
here), chained to torch's ProcessRaisedException, whose message holds the worker's traceback. When one worker
fails, torch terminates the others, so no rank is left waiting in a collective.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import traceback
from typing import Any, Callable, NamedTuple, Optional

logger = logging.getLogger(__name__)


class TorchrunRank(NamedTuple):
    rank: int
    world_size: int
    local_rank: int


def torchrun_rank() -> Optional[TorchrunRank]:
    """This process's place in a `torchrun` job, or None when it was not started by torchrun."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return TorchrunRank(rank, world, int(os.environ.get("LOCAL_RANK", rank)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(fn: Callable[..., Any], *args: Any, nranks: int = 1, backend: str = "gloo", return_all: bool = False) -> Any:
    """Run `fn(rank, nranks, *args)` on every rank; return what rank 0 returned.

    Args:
        fn: a module-level function (spawned workers import it by name).
        *args: picklable arguments passed to every rank.
        nranks: number of processes; ignored under torchrun, where WORLD_SIZE decides.
        backend: torch.distributed backend: 'nccl' for GPUs, 'gloo' for CPU.
        return_all: return every rank's value, in rank order (this process's alone under torchrun).

    Returns:
        Rank 0's return value (under torchrun, this rank's). Spawned ranks send it back through a pipe, so keep it
        small (a path, a few numbers).
    """
    import torch.distributed as dist

    placed = torchrun_rank()
    if placed is not None:
        if not dist.is_initialized():
            dist.init_process_group(backend, init_method="env://")
        value = fn(placed.rank, placed.world_size, *args)
        return [value] if return_all else value
    if isinstance(nranks, bool) or not isinstance(nranks, int) or nranks < 1:
        raise ValueError(f"nranks must be a positive int, got {nranks!r}")
    if nranks == 1:
        value = fn(0, 1, *args)
        return [value] if return_all else value
    outcome = _spawn(fn, args, nranks, backend)
    return [outcome.get(rank) for rank in range(nranks)] if return_all else outcome.get(0)


def _spawn(fn: Callable[..., Any], args: tuple, nranks: int, backend: str) -> dict[int, Any]:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    address = f"tcp://127.0.0.1:{free_port()}"
    log_level = logging.getLogger("colbert").getEffectiveLevel() if logging.getLogger().handlers else None
    logger.info("Spawning %d processes (%s, %s)", nranks, backend, address)
    try:
        mp.start_processes(_worker, args=(fn, args, nranks, backend, address, results, log_level), nprocs=nranks,
                           join=True, start_method="spawn")
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
        raised = _first_error(_drain(results))
        if raised is not None:
            raise raised from e
        raise
    return {rank: value for rank, kind, value in _drain(results) if kind == "ok"}


def _worker(rank: int, fn: Callable[..., Any], args: tuple, nranks: int, backend: str, address: str,
            results: Any, log_level: Optional[int]) -> None:
    """Body of a spawned process: join the group, run fn, report its result or its exception.

    A spawned process starts with no logging handlers; when the caller had configured logging, the worker logs
    to stderr at the caller's level for 'colbert', so rank 0's progress lines stay visible.
    """
    import torch
    import torch.distributed as dist

    if log_level is not None:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("colbert").setLevel(log_level)
    if backend == "gloo":  # CPU ranks share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nranks))
    dist.init_process_group(backend, init_method=address, rank=rank, world_size=nranks)
    try:
        value = fn(rank, nranks, *args)
        results.put((rank, "ok", value if rank == 0 else None))
    except BaseException as e:
        results.put((rank, "error", _picklable(e)))
        raise
    finally:
        dist.destroy_process_group()


def _picklable(e: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError carrying its traceback."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # any failure to pickle or rebuild: fall back to text
        return RuntimeError("".join(traceback.format_exception(type(e), e, e.__traceback__)))


def _drain(queue: Any) -> list[tuple[int, str, Any]]:
    items = []
    while not queue.empty():
        items.append(queue.get())
    return items


def _first_error(items: list[tuple[int, str, Any]]) -> Optional[BaseException]:
    errors = sorted((rank, value) for rank, kind, value in items if kind == "error")
    return errors[0][1] if errors else None


# ----------------------------------------------------------------------------------------------- the reference's face


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (the reference's helper)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _call_with_config(rank: int, nranks: int, callee: Callable[..., Any], config: Any, args: tuple) -> Any:
    from colbert.infra.config import RunConfig

    return callee(type(config).from_existing(config, RunConfig(rank=rank, nranks=nranks)), *args)


class Launcher:
    """The reference's Launcher: `Launcher(callee).launch(config, *args)` runs `callee(config, *args)` on every rank
    of the Run() context (config.rank set per rank) and returns rank 0's value (every rank's with return_all).

    Args:
        callee: a module-level function when nranks > 1 (spawned processes import it by name).
        run_config: overrides of the Run() context (nranks, ...).
        return_all: return a list of every rank's value.
    """

    def __init__(self, callee: Callable[..., Any], run_config: Any = None, return_all: bool = False) -> None:
        from colbert.infra.run import Run

        self.callee, self.return_all = callee, return_all
        resolved = Run().resolve()
        self.run_config = type(resolved).from_existing(resolved, run_config)  # run_config wins, as in the reference
        self.nranks = self.run_config.nranks

    def launch(self, custom_config: Any, *args: Any) -> Any:
        config = type(custom_config).from_existing(custom_config, self.run_config)
        return launch(_call_with_config, self.callee, config, args, nranks=self.nranks,
                      return_all=self.return_all)

    def launch_without_fork(self, custom_config: Any, *args: Any) -> Any:
        """Run the callee in this process (one rank only)."""
        if self.nranks != 1:
            raise ValueError(f"launch_without_fork runs one rank, but nranks={self.nranks}; use launch()")
        config = type(custom_config).from_existing(custom_config, self.run_config)
        value = _call_with_config(0, 1, self.callee, config, args)
        return [value] if self.return_all else value
