"""Document text and metadata stored beside an index: `documents.jsonl`, one JSON object per passage, in pid order.

    {"id": "doc-17", "text": "The passage as indexed.", "metadata": {"year": 2019, "source": "pubmed"}}

The file is optional: an index has one when it was built with `Indexer.index(..., store_documents=True)` or with
`metadata=`. It is written before metadata.json (by the build, and by IndexUpdater in the version it commits), so a
complete index never holds a stale one; colbert-ai ignores it. Its line count and ids must agree with the index's
passages (checked on reading). `metadata` is any JSON object; `{}` when none was given.

Reading loads the whole file (text and metadata of every passage) into memory: a retriever returns them, and a
metadata filter evaluates its predicate on every passage.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from colbert.index import format as index_format
from colbert.index.format import DOCUMENTS_FILE

logger = logging.getLogger(__name__)

DocId = Union[int, str]
MetadataLike = Union[Sequence[Optional[Mapping[str, Any]]], Mapping[DocId, Mapping[str, Any]], None]
Predicate = Callable[[dict], bool]


def check_metadata(value: Any, what: str) -> dict:
    """`value` as a JSON-serialisable dict, or a ValueError/TypeError naming `what`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"metadata of {what} must be a dict, got {type(value).__name__}")
    value = dict(value)
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metadata of {what} has non-string keys {bad[:3]}; JSON objects take string keys")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata of {what} cannot be stored as JSON: {e}") from None
    return value


def align_metadata(metadata: MetadataLike, ids: Sequence[DocId]) -> list[dict]:
    """One metadata dict per id: `metadata` is a list aligned with `ids`, a dict {id: metadata} (ids it lacks get
    `{}`), or None (every one `{}`).

    Raises:
        ValueError: a list of another length, or a dict with ids that are not among `ids`.
    """
    if metadata is None:
        return [{} for _ in ids]
    if isinstance(metadata, Mapping):
        unknown = [doc_id for doc_id in metadata if doc_id not in set(ids)]
        if unknown:
            raise ValueError(f"metadata names {len(unknown):,} ids that are not passages of the collection, e.g. "
                             f"{unknown[:5]}")
        return [check_metadata(metadata.get(doc_id), repr(doc_id)) for doc_id in ids]
    if isinstance(metadata, (str, bytes)) or not isinstance(metadata, Sequence):
        raise TypeError(f"metadata must be a list of dicts (one per passage) or a dict {{id: dict}}, got "
                        f"{type(metadata).__name__}")
    if len(metadata) != len(ids):
        raise ValueError(f"metadata has {len(metadata):,} entries for {len(ids):,} passages; give one per passage "
                         "or a dict {id: metadata}")
    return [check_metadata(m, repr(doc_id)) for m, doc_id in zip(metadata, ids)]


@dataclass
class Documents:
    """The stored passages of an index, in pid order: `ids[p]`, `texts[p]`, `metadata[p]`."""

    ids: list[DocId]
    texts: list[str]
    metadata: list[dict]
    _pid_of: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.texts) == len(self.metadata):
            raise ValueError(f"{len(self.ids)} ids, {len(self.texts)} texts and {len(self.metadata)} metadata "
                             "entries; they must be as many")
        self._pid_of = {doc_id: pid for pid, doc_id in enumerate(self.ids) if doc_id is not None}

    def __len__(self) -> int:
        return len(self.ids)

    def pid_of(self, doc_id: DocId) -> int:
        try:
            return self._pid_of[doc_id]
        except KeyError:
            raise KeyError(f"document id {doc_id!r} is not stored in this index") from None

    def get(self, doc_id: DocId) -> dict:
        """{"id", "text", "metadata"} of one document."""
        return self.at(self.pid_of(doc_id))

    def at(self, pid: int) -> dict:
        return {"id": self.ids[pid], "text": self.texts[pid], "metadata": self.metadata[pid]}

    def mask(self, predicate: Predicate) -> Tensor:
        """Which passages' metadata satisfy `predicate` (called with each metadata dict). Shapes: -> (P,) bool."""
        if not callable(predicate):
            raise TypeError(f"a metadata filter must be a callable taking the metadata dict, got "
                            f"{type(predicate).__name__}")
        return torch.tensor([bool(predicate(m)) for m in self.metadata], dtype=torch.bool)

    def with_added(self, ids: Sequence[DocId], texts: Sequence[str], metadata: Sequence[dict]) -> Documents:
        return Documents(self.ids + list(ids), self.texts + list(texts), self.metadata + list(metadata))

    def without(self, pids: Iterable[int]) -> Documents:
        """Removed passages keep their pids (as in the index): their entries become {"id": None, "text": ""}."""
        drop = set(int(p) for p in pids)
        gone = [p in drop for p in range(len(self.ids))]
        return Documents([None if g else d for d, g in zip(self.ids, gone)],
                         ["" if g else t for t, g in zip(self.texts, gone)],
                         [{} if g else m for m, g in zip(self.metadata, gone)])


def write_documents(index_dir: str | os.PathLike, documents: Documents) -> None:
    """Write documents.jsonl atomically (a temporary sibling renamed over it). Call before metadata.json."""
    index_format.write_documents(index_dir, (documents.at(pid) for pid in range(len(documents))))


def read_documents(index_dir: str | os.PathLike, doc_ids: Optional[Sequence[DocId]],
                   num_passages: int) -> Optional[Documents]:
    """documents.jsonl checked against the index (its ids in pid order, None for pids), or None when absent.

    Raises:
        IndexFormatError: a line is not a document object, or the file disagrees with the index's passages.
    """
    records = index_format.read_documents(index_dir)
    if records is None:
        return None
    ids = [r["id"] for r in records]
    expected = list(range(num_passages)) if doc_ids is None else list(doc_ids)
    # a removed passage keeps its pid with a null id (doc_ids.json says null, or ids are pids)
    ids_seen = [e if i is None and (doc_ids is None or e is None) else i for i, e in zip(ids, expected)]
    if len(ids) != len(expected) or ids_seen != expected:
        where = next((p for p, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
        raise index_format.bad_documents(
            Path(index_dir) / DOCUMENTS_FILE, f"holds {len(ids):,} documents for {num_passages:,} passages and "
            f"disagrees with the index's ids from position {where:,}")
    return Documents(ids, [r["text"] for r in records], [r["metadata"] for r in records])


def metadata_filter(documents: Optional[Documents], predicate: Predicate, where: str) -> Callable[[Tensor], Tensor]:
    """A `filter_fn` for Searcher.search keeping the candidates whose metadata satisfy `predicate`.

    The predicate is evaluated once, on every passage, when the filter is made.
    """
    if documents is None:
        raise ValueError(f"The index at {where} stores no document metadata; build it with Indexer.index(..., "
                         "metadata=...) or store_documents=True to filter on metadata")
    keep = documents.mask(predicate)  # (P,)

    def filter_fn(pids: Tensor) -> Tensor:
        return pids[keep.to(pids.device)[pids.long()]]

    return filter_fn


__all__ = ["DOCUMENTS_FILE", "Documents", "align_metadata", "check_metadata", "metadata_filter",
           "read_documents", "write_documents"]
