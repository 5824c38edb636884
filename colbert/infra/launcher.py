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


def launch(fn: Callable[..., Any], *args: Any, nranks: int = 1, backend: str = "gloo") -> Any:
    """Run `fn(rank, nranks, *args)` on every rank; return what rank 0 returned.

    Args:
        fn: a module-level function (spawned workers import it by name).
        *args: picklable arguments passed to every rank.
        nranks: number of processes; ignored under torchrun, where WORLD_SIZE decides.
        backend: torch.distributed backend: 'nccl' for GPUs, 'gloo' for CPU.

    Returns:
        Rank 0's return value (under torchrun, this rank's). Spawned ranks send it back through a pipe, so keep it
        small (a path, a few numbers).
    """
    import torch.distributed as dist

    placed = torchrun_rank()
    if placed is not None:
        if not dist.is_initialized():
            dist.init_process_group(backend, init_method="env://")
        return fn(placed.rank, placed.world_size, *args)
    if isinstance(nranks, bool) or not isinstance(nranks, int) or nranks < 1:
        raise ValueError(f"nranks must be a positive int, got {nranks!r}")
    if nranks == 1:
        return fn(0, 1, *args)
    return _spawn(fn, args, nranks, backend)


def _spawn(fn: Callable[..., Any], args: tuple, nranks: int, backend: str) -> Any:
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
    outcome = {rank: value for rank, kind, value in _drain(results) if kind == "ok"}
    return outcome.get(0)


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
