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

Not thread-safe: while add/remove swap the searcher's index, searches in other threads of the same process may
see the swap half done. Searchers in other processes are never affected until they reopen the index.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch

from colbert.data import Collection
from colbert.data.collection import check_id
from colbert.errors import CheckpointError
from colbert.indexing import plan as index_plan
from colbert.indexing import versions
from colbert.indexing.codec import ResidualCodec
from colbert.indexing.edits import IndexState, refit_codec
from colbert.indexing.verify import verify_index
from colbert.indexing.versions import IndexChangedError
from colbert.infra.config import ColBERTConfig
from colbert.infra.device import indexing_uses_bf16
from colbert.search.index import DocId, LoadedIndex

logger = logging.getLogger(__name__)

DEFAULT_CHUNKSIZE = index_plan.MAX_CHUNK_PASSAGES  # the reference's name for the largest chunk (see chunk_capacity)
DRIFT_WARNING = 0.5  # warn when embeddings added since the centroids were fitted exceed this share of those fitted on
UPDATES_KEY = "updates"  # in metadata.json: {"next_doc_id", "fitted_embeddings", "added_embeddings"}

Passages = Union[Sequence[str], Mapping[DocId, str], Collection]

__all__ = ["IndexUpdater", "IndexChangedError", "verify_index", "chunk_capacity"]


def chunk_capacity(doc_maxlen: int) -> int:
    """Passages per chunk file for added passages: the Indexer's chunk size for a large collection."""
    return min(index_plan.MAX_CHUNK_PASSAGES, max(1, index_plan.CHUNK_EMBEDDINGS_BUDGET // doc_maxlen))


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
        searcher: the Searcher whose index to change (it sees every change at once), or an index folder.
        checkpoint: the encoder for added passages (a name, a folder or a Checkpoint); default the searcher's, or the
            one the index was built with.
        drift_warning: see the module docstring; None never warns.

    Raises:
        TypeError: no searcher or index folder was given.
    """

    def __init__(self, config: Optional[ColBERTConfig] = None, searcher: Any = None, checkpoint: Any = None,
                 *, drift_warning: Optional[float] = DRIFT_WARNING) -> None:
        if searcher is None:
            raise TypeError("IndexUpdater needs the Searcher to update (or an index folder): "
                            "IndexUpdater(config, searcher, checkpoint)")
        if isinstance(searcher, (str, os.PathLike)):
            self.searcher, loaded, self._mmap = None, LoadedIndex.open(searcher), True
        else:
            self.searcher, loaded = searcher, searcher.loaded
            self._mmap = bool(getattr(searcher.config, "load_index_with_mmap", True))
        self.index_path = Path(loaded.path)
        self.config = ColBERTConfig.from_existing(loaded.config, config)
        for key in ("dim", "nbits"):
            if getattr(self.config, key) != getattr(loaded.config, key):
                raise ValueError(f"config has {key}={getattr(self.config, key)} but the index at {self.index_path} "
                                 f"was built with {key}={getattr(loaded.config, key)}; they must match")
        self._checkpoint_arg, self._checkpoint = checkpoint, None
        self.drift_warning, self._warned = drift_warning, False
        self._load(loaded)

    def _load(self, loaded: LoadedIndex) -> None:
        self._state = IndexState.from_loaded(loaded)
        updates = dict(self._state.metadata.get(UPDATES_KEY) or {})
        updates.setdefault("fitted_embeddings", self._state.num_embeddings)
        updates.setdefault("added_embeddings", 0)
        self._state.metadata[UPDATES_KEY] = updates
        self._dirty = False

    # ----------------------------------------------------------------------------------------------- views

    @property
    def ids(self) -> list[DocId]:
        """The ids of the passages in the index (removed ones left out), with the changes not yet persisted."""
        return self._state.live_ids

    def __len__(self) -> int:
        return self._state.num_live

    def __contains__(self, doc_id: object) -> bool:
        try:
            return self._state.pid_of(doc_id) is not None  # type: ignore[arg-type]
        except TypeError:  # unhashable
            return False

    @property
    def pending(self) -> bool:
        """Whether there are changes that persist_to_disk() has not written yet."""
        return self._dirty

    @property
    def drift(self) -> float:
        """Embeddings added since the centroids were fitted, as a share of the embeddings they were fitted on."""
        updates = self._state.metadata[UPDATES_KEY]
        return updates["added_embeddings"] / max(1, updates["fitted_embeddings"])

    @property
    def loaded(self) -> LoadedIndex:
        """The index as search sees it now (what the searcher was given)."""
        return self.searcher.loaded if self.searcher is not None else self._state.to_loaded()

    # ----------------------------------------------------------------------------------------------- edits

    def add(self, passages: Passages, ids: Optional[Sequence[DocId]] = None) -> list[DocId]:
        """Encode and add passages; searches through the searcher see them at once.

        Args:
            passages: a dict {id: text}, a list of texts (with `ids=`, or given the next free integer ids: one more
                than the largest integer id the index has ever held; as strings in an index of string ids), or a
                Collection (its ids).
            ids: the ids of a list of texts.

        Returns:
            The ids of the added passages, in order ([] for an empty add, which changes nothing).

        Raises:
            ValueError: an id is already in the index or repeated; a passage has no token.
            TypeError: passages or ids of the wrong type.
            IndexChangedError: the index on disk was deleted or replaced since it was opened.
        """
        texts, new_ids = self._prepare(passages, ids)
        self._check_base()
        if not texts:
            return []
        from colbert.indexing.encoder import encode_passages

        encoder = self._encoder()
        bf16 = indexing_uses_bf16(self.config, encoder.device)  # as the Indexer encodes and compresses
        embeddings, doclens = encode_passages(encoder, texts, self.config.index_bsize, show_progress=False, bf16=bf16)
        codes, residuals = self._codec().compress(embeddings,
                                                  bf16=indexing_uses_bf16(self.config, torch.device("cpu")))
        self._state.append(codes, residuals, doclens, new_ids)
        self._state.metadata[UPDATES_KEY]["added_embeddings"] += int(codes.numel())
        self._changed()
        logger.info("Added %d passages (%s embeddings)", len(texts), f"{codes.numel():,}")
        self._warn_drift()
        return new_ids

    def remove(self, ids: Iterable[DocId]) -> list[DocId]:
        """Remove passages by id; searches through the searcher stop returning them at once.

        Returns:
            The removed ids, each once ([] for an empty list).

        Raises:
            ValueError: an id is not in the index (nothing is removed), or every passage would be removed.
            IndexChangedError: the index on disk was deleted or replaced since it was opened.
        """
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"remove takes a list of ids, got {type(ids).__name__}; wrap a single id in a list")
        for doc_id in ids:
            check_id(doc_id, "an id to remove")
        ids = list(dict.fromkeys(ids))
        unknown = [doc_id for doc_id in ids if self._state.pid_of(doc_id) is None]
        if unknown:
            raise ValueError(f"{len(unknown):,} of the ids to remove are not in the index at {self.index_path}: "
                             f"{', '.join(map(repr, unknown[:5]))}{', ...' if len(unknown) > 5 else ''}; nothing "
                             "was removed")
        if ids and len(ids) == self._state.num_live:
            raise ValueError(f"Removing all {len(ids):,} passages would leave an empty index; build a new index "
                             "instead (Indexer.index(name, collection, overwrite=True))")
        self._check_base()
        if not ids:
            return []
        self._state.remove(torch.tensor(sorted(self._state.pid_of(i) for i in ids), dtype=torch.int64))
        self._changed()
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
        """
        self._check_base()
        if not self._dirty:
            logger.info("No changes to persist to %s", self.index_path)
            return
        real = Path(os.path.realpath(self.index_path))  # an index reached through a symlink is updated in place
        with versions.transaction(real, base=self._state.base) as txn:
            self._state.write(txn.dir, base_dir=real, capacity=chunk_capacity(self.config.doc_maxlen))
            txn.commit()
        logger.info("Persisted %s passages to %s", f"{self._state.num_live:,}", self.index_path)
        self._reopen()

    def reindex(self, kmeans_niters: Optional[int] = None) -> None:
        """Refit the centroids (and their number, from the number of embeddings, as the Indexer) and the residual
        buckets on the embeddings stored in the index, decompressed (no model or texts needed); re-encode every
        embedding with them, and persist (with any pending changes).

        It rebalances the centroids of an index that grew, but it compresses already-compressed embeddings: on
        SciFact it did not recover the quality lost to drift (nDCG@10 0.605 after it, 0.610 before, 0.619 for a
        rebuild; docs/updates.md). Rebuild from the texts when quality matters.
        """
        self._check_base()
        niters = kmeans_niters if kmeans_niters is not None else self.config.kmeans_niters
        old = self._codec()
        new = refit_codec(self._state, old, niters)
        self._state.recompress(new, old)
        n = self._state.num_embeddings
        self._state.metadata[UPDATES_KEY].update(fitted_embeddings=n, added_embeddings=0)
        self._dirty, self._warned = True, False
        self.persist_to_disk()

    # ----------------------------------------------------------------------------------------------- helpers

    def _prepare(self, passages: Passages, ids: Optional[Sequence[DocId]]) -> tuple[list[str], list[DocId]]:
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
            return texts, self._next_ids(len(texts))
        return texts, self._check_new_ids(list(ids), len(texts))

    def _check_new_ids(self, ids: list[DocId], count: int) -> list[DocId]:
        if len(ids) != count:
            raise ValueError(f"got {len(ids):,} ids for {count:,} passages")
        for doc_id in ids:
            check_id(doc_id, "a passage id")
        seen: set = set()
        repeated = [doc_id for doc_id in ids if doc_id in seen or seen.add(doc_id)]
        if repeated:
            raise ValueError(f"ids repeated in this add: {', '.join(map(repr, repeated[:5]))}; nothing was added")
        present = [doc_id for doc_id in ids if self._state.pid_of(doc_id) is not None]
        if present:
            raise ValueError(f"{len(present):,} ids are already in the index: {', '.join(map(repr, present[:5]))}; "
                             "nothing was added. Remove them first to replace their text.")
        return ids

    def _next_ids(self, count: int) -> list[DocId]:
        """The next free integer ids (strings when every id of the index is a string); never reused. In an index
        whose ids are its pids they are the next pids, as the reference's add returns."""
        updates = self._state.metadata[UPDATES_KEY]
        live = self._state.live_ids
        values = [v for v in map(_int_value, live) if v is not None]
        positional = self._state.num_passages if self._state.stored_ids() is None else 0
        start = max([updates.get("next_doc_id", 0), positional, *(v + 1 for v in values)])
        as_str = bool(live) and all(isinstance(d, str) for d in live)
        new = [str(n) if as_str else n for n in range(start, start + count)]
        updates["next_doc_id"] = start + count
        return new

    def _check_base(self) -> None:
        base = self._state.base
        if base is None or base.is_current():
            return
        what = "was deleted" if not self.index_path.exists() else "was changed by another writer (or rebuilt)"
        raise IndexChangedError(f"The index at {self.index_path} {what} after this IndexUpdater opened it; its "
                                "changes can no longer be committed. Open a new Searcher and IndexUpdater.")

    def _encoder(self) -> Any:
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

    def _codec(self) -> ResidualCodec:
        return ResidualCodec(*self._state.codec, nbits=self.config.nbits)

    def _changed(self) -> None:
        self._dirty = True
        if self.searcher is not None:
            self._serve(self._state.to_loaded(join_residuals=self.searcher.device.type != "cpu"))

    def _serve(self, loaded: LoadedIndex) -> None:
        from colbert.search import plaid

        self.searcher.ranker = plaid.SearchIndex.from_loaded(loaded, self.searcher.device)
        self.searcher.loaded = loaded

    def _reopen(self) -> None:
        """Read the committed version back, so the searcher maps the new files instead of holding edits in RAM."""
        loaded = LoadedIndex.open(self.index_path, mmap=self._mmap)
        self._load(loaded)
        if self.searcher is not None:
            self._serve(loaded)

    def _warn_drift(self) -> None:
        if self.drift_warning is None or self._warned or self.drift <= self.drift_warning:
            return
        self._warned = True
        updates = self._state.metadata[UPDATES_KEY]
        logger.warning(
            "%s embeddings were added to %s since its centroids were fitted on %s (%.0f%% > %.0f%%): search "
            "quality drifts as the collection moves away from them (on SciFact, half built then doubled: nDCG@10 "
            "0.610 vs 0.619 for a full build). Rebuild it from the texts (Indexer.index(..., overwrite=True)) to "
            "recover; IndexUpdater.reindex() refits the centroids without a model but does not recover the "
            "quality (docs/updates.md).", f"{updates['added_embeddings']:,}", self.index_path,
            f"{updates['fitted_embeddings']:,}", 100 * self.drift, 100 * self.drift_warning)

    def __repr__(self) -> str:
        return (f"IndexUpdater({str(self.index_path)!r}, {self._state.num_live:,} passages, "
                f"pending={self._dirty})")
