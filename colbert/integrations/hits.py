"""What the framework adapters share: search results with their stored text and metadata, and metadata filters.

The frameworks are not imported here: this module only needs a Searcher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

from colbert.search.index import DocId

logger = logging.getLogger(__name__)

MetadataFilter = Union[Callable[[dict], bool], Mapping[str, Any], None]


@dataclass
class Hit:
    """One search result: the document id, its rank (from 1), score, text and stored metadata."""

    doc_id: DocId
    rank: int
    score: float
    text: str
    metadata: dict


def as_predicate(where: MetadataFilter) -> Optional[Callable[[dict], bool]]:
    """A metadata filter as a predicate: a callable is kept; a dict {key: value} keeps documents whose metadata
    has every key equal to its value (a list or set value: any of its items).

    Example:
        >>> keep = as_predicate({"year": [2019, 2020], "lang": "en"})
        >>> keep({"year": 2020, "lang": "en"}), keep({"year": 2018, "lang": "en"}), keep({"year": 2019})
        (True, False, False)
    """
    if where is None or callable(where):
        return where
    if not isinstance(where, Mapping):
        raise TypeError(f"a metadata filter is a dict {{key: value}} or a function of the metadata dict, got "
                        f"{type(where).__name__}")
    wanted = dict(where)

    def predicate(metadata: dict) -> bool:
        for key, value in wanted.items():
            if key not in metadata:
                return False
            if isinstance(value, (list, tuple, set, frozenset)):
                if metadata[key] not in value:
                    return False
            elif metadata[key] != value:
                return False
        return True

    return predicate


def check_texts_available(searcher: Any) -> None:
    """Raise unless results can carry their text: documents stored with the index, or a collection given."""
    if searcher.documents is not None:
        return
    try:
        searcher.collection
    except FileNotFoundError as e:
        raise ValueError(f"The index at {searcher.index} stores no document texts and has no collection here, so a "
                         "retriever cannot return them. Build it with Indexer.index(..., store_documents=True) (or "
                         "metadata=...), or open it with Searcher(index, collection=...).") from e


def search_hits(searcher: Any, query: str, k: int, where: MetadataFilter = None, exact: bool = False) -> list[Hit]:
    """The top k documents for `query`, with text and metadata. A metadata filter keeps only matching documents,
    applied before scoring; every matching document is scored exactly (as `search(pids=...)`)."""
    predicate = as_predicate(where)
    pids = None if predicate is None else searcher.ids_where(predicate)
    if pids is not None and not pids:
        return []
    ids, ranks, scores = searcher.search(query, k=k, pids=pids, exact=exact)
    documents = searcher.documents
    if documents is None:
        text_of = _collection_texts(searcher.collection, ids)
        return [Hit(doc_id, rank, score, text_of[doc_id], {}) for doc_id, rank, score in zip(ids, ranks, scores)]
    hits = []
    for doc_id, rank, score in zip(ids, ranks, scores):
        record = documents.get(doc_id)
        hits.append(Hit(doc_id, rank, score, record["text"], dict(record["metadata"])))
    return hits


def _collection_texts(collection: Any, ids: list[DocId]) -> dict[DocId, str]:
    """The texts of `ids` in a Collection (passages the index holds but the collection lacks get "")."""
    if collection.ids is None:
        return {i: collection[i] if isinstance(i, int) and 0 <= i < len(collection) else "" for i in ids}
    wanted = set(ids)
    found = {doc_id: collection[p] for p, doc_id in enumerate(collection.ids) if doc_id in wanted}
    return {i: found.get(i, "") for i in ids}
