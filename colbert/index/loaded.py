"""IndexHandle: the index a Searcher serves, shared with the IndexUpdaters that change it.

Readers call `snapshot()` once per query and read only that snapshot: a state, once published, is never changed, so
a search sees one whole state, the old one or the new one. Writers take the handle's writer lock (`writing()`), build
a new state beside the published one and `publish` it with one reference assignment. The writer side is exclusive
within a process; a second writer waits for the first, for at most `timeout` seconds when given
(`IndexUpdater(..., lock_timeout=5.0)`), then gets IndexBusyError. Writers in other processes are kept apart by the
folder lock of colbert.indexing.versions.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import torch

from colbert.errors import ColBERTError

if TYPE_CHECKING:
    from colbert.search.index import LoadedIndex

__all__ = ["IndexBusyError", "IndexHandle", "Snapshot"]


class IndexBusyError(ColBERTError, TimeoutError):
    """Another writer held the index handle for longer than this writer was willing to wait."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One published state of an index: never changed after it is published.

    Attributes:
        loaded: the index (its tensors, ids and metadata).
        view: what the owner prepared from `loaded` for reading (the Searcher's plaid.SearchIndex on its device);
            `loaded` itself when the handle has no `prepare`.
        generation: 0 for the state the handle was made with, +1 for every publish.
        pending: whether the state holds changes that are not on disk yet (IndexUpdater.persist_to_disk).
        documents: the texts and metadata of this state when its writer supplied them (IndexUpdater: its
            colbert.indexing.documents.Documents, or False when the index stores none); None: read them from the
            index folder when needed.
    """

    loaded: LoadedIndex
    view: Any
    generation: int
    pending: bool
    documents: Any = None


class IndexHandle:
    """The published state of an index and the lock its writers share.

    Args:
        loaded: the index as opened.
        prepare: builds the `view` readers use from a LoadedIndex (called on every publish, by the writer);
            default: none, the view is the LoadedIndex.
        device: where readers search (an IndexUpdater keeps residuals in one tensor for a GPU).
        mmap: whether the owner memory-maps the index files (an IndexUpdater reopens a persisted index the same way).
    """

    def __init__(self, loaded: LoadedIndex, prepare: Optional[Callable[[LoadedIndex], Any]] = None,
                 device: torch.device | str = "cpu", mmap: bool = True) -> None:
        self.device, self.mmap = torch.device(device), mmap
        self._prepare = prepare
        self._lock = threading.Lock()
        self._owner: Optional[int] = None  # the thread holding the writer lock
        self._depth = 0  # nested writing() blocks of that thread
        self._edits: Any = None
        self._current = Snapshot(loaded, self._view(loaded), generation=0, pending=False)

    def _view(self, loaded: LoadedIndex) -> Any:
        return loaded if self._prepare is None else self._prepare(loaded)

    def snapshot(self) -> Snapshot:
        """The state published last: read it once and use it for the whole query."""
        return self._current

    def fork(self) -> IndexHandle:
        """A new handle that starts from this one's published state (same view, device and mmap) and then goes its
        own way: for copy-on-write users that prepare a change privately and publish it elsewhere when it is
        whole (the HTTP server)."""
        fork = IndexHandle.__new__(IndexHandle)
        fork.device, fork.mmap, fork._prepare = self.device, self.mmap, self._prepare
        fork._lock, fork._owner, fork._depth, fork._edits = threading.Lock(), None, 0, None
        fork._current = self._current
        return fork

    @property
    def edits(self) -> Any:
        """The writers' working state for the published snapshot (IndexUpdater's edit state), shared by every
        writer of this handle so that none loses another's changes; None until a writer publishes one. Only
        inside `writing()`."""
        self._check_writer("read the edit state")
        return self._edits

    @contextmanager
    def writing(self, timeout: Optional[float] = None) -> Iterator[IndexHandle]:
        """Hold the writer lock for the block (re-entrant within one thread).

        Args:
            timeout: seconds to wait for another writer to finish; None waits as long as it takes.

        Raises:
            IndexBusyError: another writer held the lock for longer than `timeout`.
        """
        me = threading.get_ident()
        if self._owner != me:
            if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
                raise IndexBusyError(f"Another writer held the index at {self._current.loaded.path} for more than "
                                     f"{timeout}s; try again later, or wait longer (lock_timeout=...)")
            self._owner = me
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._lock.release()

    def publish(self, loaded: LoadedIndex, *, pending: bool, edits: Any = None, documents: Any = None) -> Snapshot:
        """Make `loaded` the state every later `snapshot()` returns, in one step. Only inside `writing()`.

        Args:
            loaded: the new state; it must not be changed afterwards (searches may be reading it).
            pending: whether it holds changes not yet on disk.
            edits: the writers' working state that produced it (see `edits`), or None.
            documents: see Snapshot.documents.
        """
        self._check_writer("publish")
        snapshot = Snapshot(loaded, self._view(loaded), self._current.generation + 1, pending, documents)  # before the swap
        self._current, self._edits = snapshot, edits
        return snapshot

    def _check_writer(self, what: str) -> None:
        if self._owner != threading.get_ident():
            raise RuntimeError(f"Only a writer may {what}: use `with handle.writing(): ...`")

    def __repr__(self) -> str:
        snap = self._current
        return (f"IndexHandle({str(snap.loaded.path)!r}, generation={snap.generation}, pending={snap.pending}, "
                f"device={self.device})")
