"""The served indexes: each a published Searcher that requests read, swapped in one step by the writer.

Readers take `served.searcher` once per request and use only that object, whose index handle
(colbert.index.loaded.IndexHandle) nobody publishes to after it is served. A write works on a private copy: the same
checkpoint and config, and a fork of the handle (`IndexHandle.fork`). An IndexUpdater bound to that copy adds or
removes and persists (one atomic commit on disk, colbert.indexing.versions), which publishes the committed files in
the fork; only then is the copy served, by one reference assignment. Searches running meanwhile finish on the
previous state, whose memory maps stay valid after the commit. One writer per index at a time (an asyncio.Lock
in the service, besides the handle's own writer lock).
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from colbert.data.collection import _PLAIN_INT
from colbert.search.index import DocId
from colbert.server.config import IndexSpec

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ServedIndex:
    """One index of the service.

    Attributes:
        spec: its name and folder. searcher: the published state (None until loaded). error: why loading failed.
        int_ids: whether the index's ids are ints (JSON object keys are strings: "42" then means 42).
        texts: passages' texts by id, from the collection file and the documents added through the service.
    """

    spec: IndexSpec
    searcher: Any = None
    error: Optional[str] = None
    int_ids: bool = True
    texts: Optional[dict] = None
    write_lock: Any = None  # asyncio.Lock, created on the event loop
    _writer_checkpoint: Any = field(default=None, repr=False)
    _texts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ready(self) -> bool:
        return self.searcher is not None

    def load(self, checkpoint: Optional[str], bf16_queries: bool = False) -> None:
        """Open the index and its checkpoint (slow: run it off the event loop); with `bf16_queries`, also build the
        checkpoint's bf16 query encoder (Checkpoint.query), so that the first request does not wait for it."""
        from colbert.searcher import Searcher

        searcher = Searcher(str(self.spec.path), checkpoint=checkpoint, verbose=0)
        if bf16_queries:
            searcher.encode("warm-up", precision="bf16")
        ids = searcher.loaded.doc_ids
        self.int_ids = ids is None or all(isinstance(i, int) for i in ids)  # fixed once: new ids follow the build's
        self.publish(searcher)
        logger.info("Serving %s from %s: %s documents", self.name, searcher.index,
                    f"{searcher.loaded.num_live:,}")

    def publish(self, searcher: Any) -> None:
        self.searcher = searcher

    def private_copy(self) -> Any:
        """A copy of the published Searcher that a writer may change: it shares the checkpoint and config; its
        index is its own (a fork of the published one's handle), so an IndexUpdater on it changes nothing served."""
        private = copy.copy(self.searcher)
        private.index_handle = self.searcher.index_handle.fork()
        return private

    def writer_checkpoint(self) -> Any:
        """The served model for the writer's document encoding, with a tokenizer of its own: writes encode on the
        write thread while queries are encoded on the model thread, and a fast tokenizer must not be used by two
        threads at once. The weights are shared (a forward pass changes nothing in them)."""
        if self._writer_checkpoint is None:
            checkpoint = self.searcher.checkpoint
            writer = copy.copy(checkpoint)  # shares the modules and parameters
            object.__setattr__(writer, "doc_tokenizer", copy.deepcopy(checkpoint.doc_tokenizer))
            self._writer_checkpoint = writer
        return self._writer_checkpoint

    # ------------------------------------------------------------------------------------------------ ids

    def doc_id(self, value: DocId, loaded: Any = None) -> DocId:
        """A request's id as the index stores it (JSON object keys are strings).

        With `loaded`, an id to look up: as given when the index has it, else "42" as 42 or 42 as "42" when the
        index has that. Without, a new id: "42" becomes 42 in an index built with int ids.
        """
        other: Any = None
        if isinstance(value, str) and _PLAIN_INT.match(value):
            other = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            other = str(value)
        if loaded is None:
            return other if self.int_ids and isinstance(other, int) else value
        if other is not None and value not in loaded and other in loaded:
            return other
        return value

    # ---------------------------------------------------------------------------------------------- texts

    def document_of(self, searcher: Any, doc_id: DocId) -> dict:
        """{"text", "metadata"?} of a passage: from the documents the index stores (documents.jsonl) when it has
        them, else its text from the collection file or the documents added here, else None."""
        stored = searcher.documents
        if stored is not None:
            found = stored.get(doc_id)
            return {"text": found["text"], "metadata": found["metadata"]}
        return {"text": self.text_of(doc_id)}

    def text_of(self, doc_id: DocId) -> Optional[str]:
        """The passage's text when known (collection file or added here), else None."""
        with self._texts_lock:
            if self.texts is None:
                self.texts = self._read_collection()
            return self.texts.get(doc_id)

    def remember(self, added: dict, removed: list) -> None:
        with self._texts_lock:
            if self.texts is None:
                self.texts = self._read_collection()
            for doc_id in removed:
                self.texts.pop(doc_id, None)
            self.texts.update(added)

    def _read_collection(self) -> dict:
        from colbert.data import Collection

        path = self.spec.collection
        if path is None and self.searcher is not None:
            named = self.searcher.config.collection
            path = Path(named) if isinstance(named, str) and Path(named).is_file() else None
        if path is None:
            return {}
        collection = Collection(path=path)
        logger.info("Read the texts of %s from %s (%s passages)", self.name, path, f"{len(collection):,}")
        return {collection.id_of(pid): text for pid, text in enumerate(collection)}


class Registry:
    """The served indexes by name. A request's `index` is only ever looked up here, never used as a path."""

    def __init__(self, specs: list[IndexSpec]) -> None:
        self.indexes = {spec.name: ServedIndex(spec) for spec in specs}

    def __iter__(self):
        return iter(self.indexes.values())

    @property
    def ready(self) -> bool:
        return all(served.ready for served in self)

    def names(self) -> list[str]:
        return list(self.indexes)
