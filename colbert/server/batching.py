"""Model work off the event loop, and concurrent queries encoded together.

`Workers` holds three thread pools: ONE thread for every model call (tokenizers and the forward pass are not made
for concurrent use, and one forward already uses every core through torch's intra-op threads), a few for PLAID
searches, and one for index commits. A job that starts while other requests are in flight runs the native kernels on
its own thread only (`colbert.kernels.thread_cap(1)`): the cores are busy anyway, and a kernel's helper threads
would slow torch's encoder, whose OpenMP threads wait for one another. A lone request gets every thread.

`QueryBatcher` gathers the queries of concurrent requests: while other requests that may bring queries are in
flight, the first waits `window_s` for company; then up to `max_batch` queries are encoded in one forward pass. While
that pass runs, later queries queue up and form the next batch, so batches grow with the load. A lone request
(nothing else in flight) does not wait: its query is encoded at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

from torch import Tensor

from colbert import kernels

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Workers:
    """The three pools. `busy()`, read as each job starts, says whether other requests are in flight (None: never)."""

    def __init__(self, search_threads: int, busy: Optional[Callable[[], bool]] = None) -> None:
        self.model = ThreadPoolExecutor(1, thread_name_prefix="colbert-model")
        self.search = ThreadPoolExecutor(search_threads, thread_name_prefix="colbert-search")
        self.write = ThreadPoolExecutor(1, thread_name_prefix="colbert-write")
        self.busy = busy

    def _job(self, fn: Callable[..., T], args: tuple) -> Callable[[], T]:
        def job() -> T:
            with kernels.thread_cap(1 if self.busy is not None and self.busy() else None):
                return fn(*args)
        return job

    async def on_model(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.model, self._job(fn, args))

    async def on_search(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.search, self._job(fn, args))

    async def on_write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.write, self._job(fn, args))

    def shutdown(self) -> None:
        for pool in (self.model, self.search, self.write):
            pool.shutdown(wait=True)


class QueryBatcher:
    """Encode queries of concurrent requests together with `encode(texts) -> (n, Lq, d)` on the model thread.

    Args:
        encode: the batch encoder (Searcher.encode).
        workers: where it runs.
        window_s: how long the first query of a batch waits for others.
        max_batch: queries per forward pass at most.
        observe: called with each batch's size (a metrics histogram).
        in_flight: how many requests that may bring queries are in flight now; the window is waited only while
            more of them are in flight than have queries waiting here. None: always wait.
    """

    def __init__(self, encode: Callable[[list[str]], Tensor], workers: Workers, window_s: float, max_batch: int,
                 observe: Optional[Callable[[int], None]] = None,
                 in_flight: Optional[Callable[[], int]] = None) -> None:
        self.encode_batch, self.workers = encode, workers
        self.window_s, self.max_batch, self.observe, self.in_flight = window_s, max_batch, observe, in_flight
        self._pending: list[tuple[str, asyncio.Future, int]] = []  # (text, its future, the encode() call's number)
        self._calls = 0
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    async def encode(self, texts: list[str], timing: Optional[dict] = None) -> list[Tensor]:
        """Each text's query embeddings (Lq, d), encoded with whatever else is waiting.

        `timing`, if given, gets "queue" (ms from this call to the start of the forward pass that encodes the first
        text: the window, and any pass still running) and "encode" (ms of that pass, shared with its batch).
        """
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        called = time.perf_counter()
        futures = [loop.create_future() for _ in texts]
        self._calls += 1
        self._pending.extend((text, future, self._calls) for text, future in zip(texts, futures))
        self._wake.set()  # type: ignore[union-attr]
        done = await asyncio.gather(*futures)  # (Q, started, ended) each
        if timing is not None and done:
            timing["queue"] = (done[0][1] - called) * 1e3
            timing["encode"] = (done[0][2] - done[0][1]) * 1e3
        return [Q for Q, _, _ in done]

    def _worth_waiting(self) -> bool:
        """Requests in flight that have not handed in their queries yet (always, when no count is kept)."""
        waiting = len({call for _, _, call in self._pending})
        return self.in_flight is None or self.in_flight() > waiting

    def _timed_encode(self, texts: list[str]) -> tuple[Tensor, float, float]:
        started = time.perf_counter()
        Q = self.encode_batch(texts)
        return Q, started, time.perf_counter()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            if len(self._pending) < self.max_batch and self._worth_waiting():
                await asyncio.sleep(self.window_s)
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            if not self._pending:
                self._wake.clear()
            batch = [(text, future) for text, future, _ in batch if not future.done()]  # cancelled: client gone
            if not batch:
                continue
            if self.observe is not None:
                self.observe(len(batch))
            try:
                Q, started, ended = await self.workers.on_model(self._timed_encode, [text for text, _ in batch])
            except Exception as e:  # handed to every waiting request, which answers 500 and logs it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for row, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result((Q[row], started, ended))  # Q (n, Lq, d)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
