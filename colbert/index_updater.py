"""IndexUpdater: add and remove passages of an index; searches see them at once, persist_to_disk() commits them.

    searcher = Searcher(index="scifact.nbits2")
    updater = IndexUpdater(config=searcher.config, searcher=searcher)   # checkpoint= optional: the searcher's
    updater.add({"doc-9001": "new text"})      # -> ["doc-9001"]; a list of texts gets the next free integer ids
    updater.remove(["doc-3", "doc-17"])
    updater.persist_to_disk()                  # one atomic commit; a new Searcher on the index now sees them

Ids are the users' own (ints or strings) and never change. Pids (positions) are stable too, as in the reference: a
removed passage keeps its position with doclen 0 and new passages take the next pids, so colbert-ai, which returns
pids and ignores doc_ids.json, reads an index persisted here with the same ids for the same documents.
New passages are compressed with the index's centroids; when additions since the centroids were fitted exceed
`drift_warning` of the embeddings they were fitted on, a warning recommends rebuilding the index (`reindex()`
refits the centroids on the stored embeddings without a model, but measured on SciFact it does not recover the
quality a rebuild does). See docs/updates.md.

Thread safety: the updater and its searcher share the searcher's IndexHandle. Each change is built beside the
published index and published in one step, so searches running in other threads see the index before or after a
change, never half of it. Writers take turns: one add, remove, persist_to_disk or reindex at a time per index handle
(others wait, at most `lock_timeout` seconds when given, then raise IndexBusyError); two updaters of one searcher
share their edits. Searchers in other processes are never affected until they reopen the index.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch

from colbert.data import Collection
from colbert.data.collection import check_id
from colbert.errors import CheckpointError, DriftWarning
from colbert.index.loaded import IndexBusyError, IndexHandle
from colbert.indexing import plan as index_plan
from colbert.index import versions
from colbert.indexing.documents import Documents, MetadataLike, align_metadata, read_documents, write_documents
from colbert.indexing.kmeans import train_centroids
from colbert.indexing.platform import Workarounds
from colbert.index.edits import IndexState, refit_codec
from colbert.index.validate import verify_index
from colbert.index.versions import IndexChangedError
from colbert.infra.config import ColBERTConfig
from colbert.infra.device import indexing_uses_bf16
from colbert.modeling.pooling import check_pooling
from colbert.index.loaded import DocId, LoadedIndex

if TYPE_CHECKING:
    from colbert.modeling.checkpoint import Checkpoint
    from colbert.searcher import Searcher

logger = logging.getLogger(__name__)

DEFAULT_CHUNKSIZE = index_plan.MAX_CHUNK_PASSAGES  # the reference's name for the largest chunk (see chunk_capacity)
DRIFT_WARNING = 0.5  # warn when embeddings added since the centroids were fitted exceed this share of those fitted on
UPDATES_KEY = "updates"  # in metadata.json: {"next_doc_id", "fitted_embeddings", "added_embeddings"}

Passages = Union[Sequence[str], Mapping[DocId, str], Collection]
CheckpointLike = Union[str, os.PathLike, "Checkpoint"]

__all__ = ["IndexUpdater", "IndexBusyError", "IndexChangedError", "verify_index", "chunk_capacity"]


def chunk_capacity(doc_maxlen: int) -> int:
    """Passages per chunk file for added passages: the Indexer's chunk size for a large collection."""
    return min(index_plan.MAX_CHUNK_PASSAGES, max(1, index_plan.CHUNK_EMBEDDINGS_BUDGET // doc_maxlen))


def _updates(metadata: dict, num_embeddings: int) -> dict:
    """metadata.json's update counters, with the defaults of an index never updated."""
    updates = dict(metadata.get(UPDATES_KEY) or {})
    updates.setdefault("fitted_embeddings", num_embeddings)
    updates.setdefault("added_embeddings", 0)
    return updates


@dataclass
class _Edits:
    """What the writers of one IndexHandle share: the index being edited and its stored documents (None when the
    index stores none). Changed only under the handle's writer lock."""

    state: IndexState
    documents: Optional[Documents]


def _int_value(doc_id: DocId) -> Optional[int]:
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        return doc_id
    if isinstance(doc_id, str) and doc_id.isascii() and doc_id.isdigit():
        return int(doc_id)
    return None


class IndexUpdater:
    """Add and remove passages of an index served by a Searcher (the reference's IndexUpdater).

    Args:
        config: encoding settings; fields it assigns override the index's (dim and nbits must match the index).
        searcher: the Searcher whose index to change (its searches see every change at once), or an index folder.
        checkpoint: the encoder for added passages (a name, a folder or a Checkpoint); default the searcher's, or the
            one the index was built with.
        drift_warning: see the module docstring; None never warns.
        lock_timeout: seconds a change waits for another writer before raising: IndexBusyError for a writer of the
            same searcher in this process, IndexLockedError (naming its pid) for a writer in another process
            holding the index's lock in persist_to_disk. None waits as long as it takes.

    Raises:
        TypeError: no searcher or index folder was given.
    """

    def __init__(self, config: Optional[ColBERTConfig] = None, searcher: Optional[Union[Searcher, str, os.PathLike]] = None,
                 checkpoint: Optional[CheckpointLike] = None, *, drift_warning: Optional[float] = DRIFT_WARNING,
                 lock_timeout: Optional[float] = versions.LOCK_TIMEOUT_S) -> None:
        if searcher is None:
            raise TypeError("IndexUpdater needs the Searcher to update (or an index folder): "
                            "IndexUpdater(config, searcher, checkpoint)")
        if config is not None and not isinstance(config, ColBERTConfig):
            raise TypeError(f"config must be a ColBERTConfig or None, got {type(config).__name__}")
        for name, value in (("drift_warning", drift_warning), ("lock_timeout", lock_timeout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value >= 0):
                raise ValueError(f"{name} must be a number >= 0 or None, got {value!r}")
        self.lock_timeout = lock_timeout
        if isinstance(searcher, (str, os.PathLike)):
            mmap = bool(config is not None and config.load_index_with_mmap)
            self.searcher, self.handle = None, IndexHandle(LoadedIndex.open(searcher, mmap=mmap), mmap=mmap)
        elif not hasattr(searcher, "index_handle"):
            raise TypeError(f"searcher must be a Searcher or an index folder, got {type(searcher).__name__}")
        else:
            self.searcher, self.handle = searcher, searcher.index_handle
        loaded = self.handle.snapshot().loaded
        self.index_path = Path(loaded.path)
        self.config = ColBERTConfig.from_existing(loaded.config, config)
        for key in ("dim", "nbits"):
            if getattr(self.config, key) != getattr(loaded.config, key):
                raise ValueError(f"config has {key}={getattr(self.config, key)} but the index at {self.index_path} "
                                 f"was built with {key}={getattr(loaded.config, key)}; they must match")
        check_pooling(self.config.pool_factor, self.config.protected_tokens, self.config.clustering_mode)
        self._checkpoint_arg, self._checkpoint = checkpoint, None
        self.drift_warning, self._warned = drift_warning, False
        self.lock_timeout = lock_timeout

    # ----------------------------------------------------------------------------------------------- views

    @property
    def loaded(self) -> LoadedIndex:
        """The index as search sees it now (with the changes not yet persisted)."""
        return self.handle.snapshot().loaded

    @property
    def ids(self) -> list[DocId]:
        """The ids of the passages in the index (removed ones left out), with the changes not yet persisted."""
        loaded = self.loaded
        ids = range(loaded.num_passages) if loaded.doc_ids is None else loaded.doc_ids
        return [doc_id for doc_id, n in zip(ids, loaded.doclens.tolist()) if doc_id is not None and n > 0]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.loaded

    @property
    def pending(self) -> bool:
        """Whether there are changes that persist_to_disk() has not written yet."""
        return self.handle.snapshot().pending

    @property
    def drift(self) -> float:
        """Embeddings added since the centroids were fitted, as a share of the embeddings they were fitted on."""
        loaded = self.loaded
        updates = _updates(loaded.metadata, loaded.num_embeddings)
        return updates["added_embeddings"] / max(1, updates["fitted_embeddings"])

    # ----------------------------------------------------------------------------------------------- edits

    def add(self, passages: Passages, ids: Optional[Sequence[DocId]] = None,
            metadata: MetadataLike = None) -> list[DocId]:
        """Encode and add passages; searches through the searcher see them at once.

        Args:
            passages: a dict {id: text}, a list of texts (with `ids=`, or given the next free integer ids: one more
                than the largest integer id the index has ever held; as strings in an index of string ids), or a
                Collection (its ids).
            ids: the ids of a list of texts.
            metadata: a JSON object per passage (a list aligned with the passages, or a dict {id: dict}); kept
                with the texts when the index stores documents (documents.jsonl), `{}` where none is given.

        Returns:
            The ids of the added passages, in order ([] for an empty add, which changes nothing).

        Raises:
            ValueError: an id is already in the index or repeated; a passage has no token.
            TypeError: passages or ids of the wrong type.
            IndexChangedError: the index on disk was deleted or replaced since it was opened.
            IndexBusyError: another writer held the index for more than `lock_timeout` seconds.
        """
        with self._editing() as edits:
            state = edits.state
            if metadata is not None and edits.documents is None:
                raise ValueError(f"The index at {self.index_path} stores no documents, so metadata cannot be kept; "
                                 "rebuild it with Indexer.index(..., store_documents=True) to store them")
            texts, new_ids = self._prepare(state, passages, ids)
            new_metadata = align_metadata(metadata, new_ids)
            self._check_base(state)
            if not texts:
                return []
            from colbert.indexing.encoder import encode_passages

            encoder = self._encoder()
            bf16 = indexing_uses_bf16(self.config, encoder.device)  # as the Indexer encodes and compresses
            embeddings, doclens = encode_passages(encoder, texts, self.config.index_bsize, show_progress=False,
                                                  bf16=bf16, pool_factor=self.config.pool_factor,
                                                  protected_tokens=self.config.protected_tokens,
                                                  workarounds=Workarounds(self.config.platform_workarounds))
            codes, residuals = state.index.codec.compress(embeddings,
                                                    bf16=indexing_uses_bf16(self.config, torch.device("cpu")))
            state.metadata[UPDATES_KEY]["added_embeddings"] += int(codes.numel())  # in the new state's metadata
            state.append(codes, residuals, doclens, new_ids)
            if edits.documents is not None:
                edits.documents = edits.documents.with_added(new_ids, texts, new_metadata)
            self._publish(edits)
            logger.info("Added %d passages (%s embeddings)", len(texts), f"{codes.numel():,}")
            self._warn_drift(state)
        return new_ids

    def remove(self, ids: Iterable[DocId]) -> list[DocId]:
        """Remove passages by id; searches through the searcher stop returning them at once.

        Returns:
            The removed ids, each once ([] for an empty list).

        Raises:
            ValueError: an id is not in the index (nothing is removed), or every passage would be removed.
            IndexChangedError: the index on disk was deleted or replaced since it was opened.
            IndexBusyError: another writer held the index for more than `lock_timeout` seconds.
        """
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"remove takes a list of ids, got {type(ids).__name__}; wrap a single id in a list")
        for doc_id in ids:
            check_id(doc_id, "an id to remove")
        ids = list(dict.fromkeys(ids))
        with self._editing() as edits:
            state = edits.state
            unknown = [doc_id for doc_id in ids if doc_id not in state.index]
            if unknown:
                raise ValueError(f"{len(unknown):,} of the ids to remove are not in the index at {self.index_path}: "
                                 f"{', '.join(map(repr, unknown[:5]))}{', ...' if len(unknown) > 5 else ''}; "
                                 "nothing was removed")
            if ids and len(ids) == state.index.num_live:
                raise ValueError(f"Removing all {len(ids):,} passages would leave an empty index; build a new index "
                                 "instead (Indexer.index(name, collection, overwrite=True))")
            self._check_base(state)
            if not ids:
                return []
            pids = sorted(state.index.pid_of(i) for i in ids)
            state.remove(torch.tensor(pids, dtype=torch.int64))
            if edits.documents is not None:
                edits.documents = edits.documents.without(pids)
            self._publish(edits)
        logger.info("Removed %d passages", len(ids))
        return ids

    def persist_to_disk(self) -> None:
        """Write the changes as a new version of the index and commit it with one atomic rename.

        Chunk files left untouched are hard-linked, added passages fill the last chunk then new ones, and the IVF
        is rebuilt from the codes. A process killed at any moment leaves the old or the new version. Afterwards
        the searcher reads the new files. No changes: nothing is written.

        Raises:
            IndexChangedError: another writer committed, or the index was deleted, since it was opened; nothing is
                written and the changes stay in memory.
            IndexBusyError: another writer held the index for more than `lock_timeout` seconds.
            IndexLockedError: a writer in another process held the index's lock for more than `lock_timeout`
                seconds; nothing is written and the changes stay in memory.
        """
        with self._editing() as edits:
            self._check_base(edits.state)
            if not self.handle.snapshot().pending:
                logger.info("No changes to persist to %s", self.index_path)
                return
            self._commit(edits)

    def reindex(self, kmeans_niters: Optional[int] = None) -> None:
        """Refit the centroids (and their number, from the number of embeddings, as the Indexer) and the residual
        buckets on the embeddings stored in the index, decompressed (no model or texts needed); re-encode every
        embedding with them, and persist (with any pending changes).

        It rebalances the centroids of an index that grew, but it compresses already-compressed embeddings, so it
        does not recover the quality lost to drift as a rebuild does (docs/updates.md). Rebuild from the texts when
        quality matters.
        """
        with self._editing() as edits:
            state = edits.state
            self._check_base(state)
            niters = kmeans_niters if kmeans_niters is not None else self.config.kmeans_niters
            old = state.index.codec
            cpu = torch.device("cpu")
            new = refit_codec(state, old, lambda sample, num_partitions: train_centroids(sample, num_partitions,
                                                                                          niters, cpu))
            state.recompress(new, old)
            n = state.index.num_embeddings
            state.metadata[UPDATES_KEY].update(fitted_embeddings=n, added_embeddings=0)
            self._warned = False
            self._commit(edits)

    # ----------------------------------------------------------------------------------------------- helpers

    @contextmanager
    def _editing(self) -> Iterator[_Edits]:
        """Hold the handle's writer lock; yield the edits of the published index, shared by its writers."""
        with self.handle.writing(self.lock_timeout):
            edits = self.handle.edits
            if edits is None:  # no writer has published yet: start from the index as opened
                snap = self.handle.snapshot()
                documents = self.searcher.documents if self.searcher is not None else read_documents(
                    snap.loaded.path, snap.loaded.doc_ids, snap.loaded.num_passages)
                edits = _Edits(self._fresh_state(snap.loaded), documents)
            yield edits

    def _publish(self, edits: _Edits) -> None:
        """Searches see the edits from now on (the state's LoadedIndex: the next edit makes a new one)."""
        self.handle.publish(edits.state.index, pending=True, edits=edits, documents=edits.documents or False)

    def _commit(self, edits: _Edits) -> None:
        """Write the edits as a new version, then publish that version read back from disk (the searcher maps
        the new files instead of holding edits in RAM)."""
        state = edits.state
        real = Path(os.path.realpath(self.index_path))  # an index reached through a symlink is updated in place
        with versions.transaction(real, base=state.index.pin, lock_timeout=self.lock_timeout) as txn:
            if edits.documents is not None:
                write_documents(txn.dir, edits.documents)  # before the index's files, metadata.json last
            state.write(txn.dir, base_dir=real, capacity=chunk_capacity(self.config.doc_maxlen))
            txn.commit()
        logger.info("Persisted %s passages to %s", f"{state.index.num_passages:,}", self.index_path)
        loaded = LoadedIndex.open(self.index_path, mmap=self.handle.mmap)
        fresh = _Edits(self._fresh_state(loaded), edits.documents)  # the documents just written
        self.handle.publish(loaded, pending=False, edits=fresh, documents=edits.documents or False)

    def _prepare(self, state: IndexState, passages: Passages,
                 ids: Optional[Sequence[DocId]]) -> tuple[list[str], list[DocId]]:
        if isinstance(passages, str):
            raise TypeError("add takes a list or a dict of passages, not one str; wrap it in a list")
        if isinstance(passages, Mapping) or isinstance(passages, Collection):
            if ids is not None:
                raise TypeError("give ids either as the keys of a dict (or a Collection's ids) or as ids=, not both")
            if isinstance(passages, Collection):
                ids, texts = [passages.id_of(pid) for pid in range(len(passages))], list(passages.data)
            else:
                ids, texts = list(passages.keys()), list(passages.values())
        elif isinstance(passages, Sequence):
            texts = list(passages)
        else:
            raise TypeError(f"passages must be a list of texts, a dict {{id: text}} or a Collection, got "
                            f"{type(passages).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"passage {i} is {type(text).__name__}, not a str")
        if ids is None:
            return texts, _next_ids(state, len(texts))
        return texts, _check_new_ids(state, list(ids), len(texts))

    def _check_base(self, state: IndexState) -> None:
        base = state.index.pin
        if base is None or base.is_current():
            return
        what = "was deleted" if not self.index_path.exists() else "was changed by another writer (or rebuilt)"
        raise IndexChangedError(f"The index at {self.index_path} {what} after this IndexUpdater opened it; its "
                                "changes can no longer be committed. Open a new Searcher and IndexUpdater.")

    def _encoder(self) -> Checkpoint:
        if self._checkpoint is None:
            from colbert.modeling.checkpoint import Checkpoint

            arg = self._checkpoint_arg
            if isinstance(arg, Checkpoint):
                self._checkpoint = arg
            elif arg is None and self.searcher is not None:
                self._checkpoint = self.searcher.checkpoint
            else:
                name = arg if arg is not None else self.config.checkpoint
                if not name:
                    raise ValueError("Adding passages needs a checkpoint: IndexUpdater(config, searcher, "
                                     "checkpoint=...)")
                self._checkpoint = Checkpoint(str(name), colbert_config=self.config, verbose=0)
            dim = self._checkpoint.colbert_config.dim
            if dim != self.config.dim:
                raise CheckpointError(f"The checkpoint makes {dim}-dim embeddings but the index at {self.index_path} "
                                      f"holds {self.config.dim}-dim ones")
        return self._checkpoint

    def _warn_drift(self, state: IndexState) -> None:
        updates = state.metadata[UPDATES_KEY]
        drift = updates["added_embeddings"] / max(1, updates["fitted_embeddings"])
        if self.drift_warning is None or self._warned or drift <= self.drift_warning:
            return
        self._warned = True
        warnings.warn(
            f"{updates['added_embeddings']:,} embeddings were added to {self.index_path} since its centroids were "
            f"fitted on {updates['fitted_embeddings']:,} ({100 * drift:.0f}% > {100 * self.drift_warning:.0f}%): "
            "search quality drifts as the collection moves away from them. Rebuild it from the texts "
            "(Indexer.index(..., overwrite=True)) to recover; IndexUpdater.reindex() refits the centroids without a "
            "model but does not recover the quality (docs/updates.md).", DriftWarning, stacklevel=3)

    def _fresh_state(self, loaded: LoadedIndex) -> IndexState:
        """The edit state of an index as opened; residuals in one tensor for a search on a GPU."""
        state = IndexState.from_loaded(loaded, join=self.handle.device.type != "cpu")
        state.metadata[UPDATES_KEY] = _updates(state.metadata, loaded.num_embeddings)
        return state

    def __repr__(self) -> str:
        snap = self.handle.snapshot()
        return f"IndexUpdater({str(self.index_path)!r}, {len(self):,} passages, pending={snap.pending})"


def _check_new_ids(state: IndexState, ids: list[DocId], count: int) -> list[DocId]:
    if len(ids) != count:
        raise ValueError(f"got {len(ids):,} ids for {count:,} passages")
    for doc_id in ids:
        check_id(doc_id, "a passage id")
    seen: set = set()
    repeated = [doc_id for doc_id in ids if doc_id in seen or seen.add(doc_id)]
    if repeated:
        raise ValueError(f"ids repeated in this add: {', '.join(map(repr, repeated[:5]))}; nothing was added")
    present = [doc_id for doc_id in ids if doc_id in state.index]
    if present:
        raise ValueError(f"{len(present):,} ids are already in the index: {', '.join(map(repr, present[:5]))}; "
                         "nothing was added. Remove them first to replace their text.")
    return ids


def _next_ids(state: IndexState, count: int) -> list[DocId]:
    """The next free integer ids (strings when every id of the index is a string); never reused. In an index
    whose ids are its pids they are the next pids, as the reference's add returns."""
    updates = state.metadata[UPDATES_KEY]
    live = state.index.live_ids
    values = [v for v in map(_int_value, live) if v is not None]
    positional = state.index.num_passages if state.stored_ids() is None else 0
    start = max([updates.get("next_doc_id", 0), positional, *(v + 1 for v in values)])
    as_str = bool(live) and all(isinstance(d, str) for d in live)
    new = [str(n) if as_str else n for n in range(start, start + count)]
    updates["next_doc_id"] = start + count
    return new
