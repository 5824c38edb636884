"""An index living in Qdrant (`pip install colbert-ai[qdrant]`): Qdrant stores each document's token embeddings as one
multivector and scores it with MaxSim itself; we encode the queries. For collections past one machine: Qdrant
shards and replicates the collection. See docs/scaling.md.

    from qdrant_client import QdrantClient
    from colbert.backends.qdrant import QdrantIndex

    client = QdrantClient(url="http://localhost:6333")            # or QdrantClient(":memory:") / path=... (local)
    store = QdrantIndex.from_index("experiments/default/indexes/scifact", client, "scifact")  # export an index
    store = QdrantIndex.from_collection(collection, "colbert-ir/colbertv2.0", client, "scifact",
                                        metadata=...)           # or encode a collection straight into Qdrant
    ids, ranks, scores = store.search("what causes anemia?", k=10, filter={"year": 2019})
    store.add({"new-doc": "text"}, metadata={"new-doc": {"year": 2024}}); store.remove(["doc-3"])

Each point: the named vector `colbert` (the document's embeddings, a multivector of `dim`-dim rows compared with
DOT, which is cosine for our normalised embeddings, and reduced by MAX_SIM) and the payload `doc_id` (the id as the
index keeps it, int or str), `text` and `metadata` (a JSON object). Qdrant point ids must be unsigned ints or UUIDs,
so a point's id is a UUID derived from the document id (`point_id`).

Scores are exactly the library's MaxSim: on an exported index they equal exact search over the index's
decompressed embeddings (`Searcher.search(..., exact=True)`), up to float rounding.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
from qdrant_client import QdrantClient, models
from torch import Tensor

from colbert.data import Collection, Queries, Ranking
from colbert.data.collection import check_id
from colbert.indexing.documents import MetadataLike, align_metadata
from colbert.search.index import DocId
from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

VECTOR_NAME = "colbert"
UPLOAD_BATCH = 64  # points per upsert: 64 docs x ~200 tokens x 128 dims x 4 B = 6.5 MiB per request
ID_NAMESPACE = uuid.UUID("6f0d6ba4-3f0e-4d2c-9a47-5c0f2f9a2b11")  # fixed: the same doc id gives the same point id

Filter = Union[models.Filter, Mapping[str, Any], None]


def point_id(doc_id: DocId) -> str:
    """The Qdrant point id of a document id: a UUID5 of its type and value (so 7 and "7" differ).

    Example:
        >>> point_id("doc-1") == point_id("doc-1"), point_id(7) == point_id("7")
        (True, False)
    """
    check_id(doc_id, "a document id")
    return str(uuid.uuid5(ID_NAMESPACE, f"{type(doc_id).__name__}:{doc_id}"))


def payload_filter(where: Filter) -> Optional[models.Filter]:
    """A Qdrant filter: a `models.Filter` as is, or a dict {key: value} on the stored metadata (every key must
    match; a list value matches any of its items), e.g. {"year": 2019, "lang": ["en", "fr"]}."""
    if where is None or isinstance(where, models.Filter):
        return where
    if not isinstance(where, Mapping):
        raise TypeError(f"filter must be a qdrant_client.models.Filter or a dict {{key: value}}, got "
                        f"{type(where).__name__}")
    must = []
    for key, value in where.items():
        if isinstance(value, (list, tuple, set, frozenset)):
            match: Any = models.MatchAny(any=list(value))
        else:
            match = models.MatchValue(value=value)
        must.append(models.FieldCondition(key=f"metadata.{key}", match=match))
    return models.Filter(must=must)


def collection_config(dim: int, quantization_config: Any = None, on_disk: Optional[bool] = None,
                      hnsw_config: Optional[models.HnswConfigDiff] = None) -> models.VectorParams:
    """The vector configuration of a ColBERT collection: `dim`-dim rows, DOT, MAX_SIM over a document's rows.

    By default the HNSW graph is disabled (m=0): each query is scored exactly against every document (MaxSim over
    all the rows), as `Searcher.search(..., exact=True)`. Pass `hnsw_config` to trade exactness for speed."""
    return models.VectorParams(
        size=dim, distance=models.Distance.DOT,
        multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        quantization_config=quantization_config, on_disk=on_disk,
        hnsw_config=hnsw_config if hnsw_config is not None else models.HnswConfigDiff(m=0))


class QdrantIndex:
    """A ColBERT collection stored in Qdrant, searched with our query encoder and Qdrant's MaxSim.

    Searcher-shaped: `search`, `search_all`, `encode`, `document`; IndexUpdater-shaped: `add`, `remove`.

    Args:
        client: a QdrantClient (a server, or local mode: ":memory:" or path=...).
        collection_name: the Qdrant collection (made by `from_index` / `from_collection` / `create`).
        checkpoint: the query (and, for `add`, document) encoder: a name, folder or colbert Checkpoint; it must be
            the one whose embeddings the collection holds.
        config: ColBERTConfig overrides (e.g. query_maxlen) for the checkpoint.
    """

    def __init__(self, client: QdrantClient, collection_name: str, checkpoint: Any, config: Any = None,
                 verbose: int = 0) -> None:
        from colbert.modeling.checkpoint import Checkpoint

        if not client.collection_exists(collection_name):
            raise ValueError(f"Qdrant has no collection {collection_name!r}; make it with QdrantIndex.from_index or "
                             "QdrantIndex.from_collection")
        self.client, self.collection_name, self.verbose = client, collection_name, verbose
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else \
            Checkpoint(str(checkpoint), colbert_config=config, verbose=verbose)
        params = client.get_collection(collection_name).config.params.vectors
        stored = params.get(VECTOR_NAME) if isinstance(params, dict) else None
        if stored is None or stored.multivector_config is None:
            raise ValueError(f"The Qdrant collection {collection_name!r} has no multivector named {VECTOR_NAME!r}; "
                             "it was not made by QdrantIndex")
        if stored.size != self.checkpoint.colbert_config.dim:
            raise ValueError(f"The Qdrant collection {collection_name!r} holds {stored.size}-dim vectors but the "
                             f"checkpoint makes {self.checkpoint.colbert_config.dim}-dim ones; use the checkpoint it "
                             "was built with")

    # ----------------------------------------------------------------------------------------------- building

    @staticmethod
    def create(client: QdrantClient, collection_name: str, dim: int, *, recreate: bool = False,
               quantization_config: Any = None, on_disk: Optional[bool] = None,
               hnsw_config: Optional[models.HnswConfigDiff] = None, shard_number: Optional[int] = None,
               replication_factor: Optional[int] = None, **create_kwargs: Any) -> None:
        """Make an empty ColBERT collection (see `collection_config`); other create_collection arguments (e.g.
        sharding_method, write_consistency_factor) pass through.

        Raises:
            ValueError: the collection exists and `recreate` is False.
        """
        if client.collection_exists(collection_name):
            if not recreate:
                raise ValueError(f"Qdrant already has a collection {collection_name!r}; pass recreate=True to "
                                 "replace it, or open it with QdrantIndex(client, name, checkpoint)")
            client.delete_collection(collection_name)
        client.create_collection(
            collection_name, vectors_config={VECTOR_NAME: collection_config(dim, quantization_config, on_disk,
                                                                            hnsw_config)},
            shard_number=shard_number, replication_factor=replication_factor, **create_kwargs)

    @classmethod
    def from_index(cls, index: Union[str, os.PathLike], client: QdrantClient, collection_name: str, *,
                   checkpoint: Any = None, collection: Any = None, metadata: MetadataLike = None,
                   batch_size: int = UPLOAD_BATCH, **create_kwargs: Any) -> QdrantIndex:
        """Export a colbert index: each document's embeddings, decompressed, with its id, text and metadata.

        Args:
            index: the index folder.
            checkpoint: the query encoder; default the one the index was built with.
            collection: the texts, when the index stores none (documents.jsonl); otherwise the stored ones.
            metadata: per-document metadata when the index stores none.
            create_kwargs: as `create` (recreate, quantization_config, shard_number, replication_factor, ...).
        """
        from colbert.indexing.documents import read_documents
        from colbert.search.index import LoadedIndex

        loaded = LoadedIndex.open(index)
        live = loaded.live_pids  # passages an IndexUpdater removed keep their pid but are not exported
        ids = loaded.live_ids
        stored = read_documents(loaded.path, loaded.doc_ids, loaded.num_passages)
        kept = None if stored is None else [stored.at(p) for p in live.tolist()]
        texts = _texts_for(ids, collection) if collection is not None else \
            ([d["text"] for d in kept] if kept is not None else [""] * len(ids))
        meta = align_metadata(metadata, ids) if metadata is not None else \
            ([d["metadata"] for d in kept] if kept is not None else [{} for _ in ids])
        batches = (decompressed(loaded, live[start:start + batch_size]) for start in range(0, len(ids), batch_size))
        cls.create(client, collection_name, loaded.dim, **create_kwargs)
        _upload(client, collection_name, ids, texts, meta, batches, batch_size, show=bool(len(ids) > 4096))
        return cls(client, collection_name, checkpoint if checkpoint is not None else loaded.config.checkpoint,
                   config=loaded.config)

    @classmethod
    def from_collection(cls, collection: Any, checkpoint: Any, client: QdrantClient, collection_name: str, *,
                        metadata: MetadataLike = None, batch_size: int = UPLOAD_BATCH, config: Any = None,
                        **create_kwargs: Any) -> QdrantIndex:
        """Encode a collection (a TSV path, list, dict {id: text} or Collection) straight into Qdrant: the
        embeddings are not compressed (no PLAID index is built).

        Args:
            metadata: per-document metadata (a list aligned with the collection or a dict {id: dict}).
            create_kwargs: as `create`.
        """
        from colbert.modeling.checkpoint import Checkpoint

        encoder = checkpoint if isinstance(checkpoint, Checkpoint) else \
            Checkpoint(str(checkpoint), colbert_config=config, verbose=0)
        collection = Collection.cast(collection)
        ids = [collection.id_of(p) for p in range(len(collection))]
        meta = align_metadata(metadata, ids)
        cls.create(client, collection_name, encoder.colbert_config.dim, **create_kwargs)
        texts = list(collection.data)
        batches = (encoder.docFromText(texts[s:s + batch_size], keep_dims=False, to_cpu=True)
                   for s in range(0, len(texts), batch_size))
        _upload(client, collection_name, ids, texts, meta, batches, batch_size, show=bool(len(ids) > 4096))
        return cls(client, collection_name, encoder)

    # ----------------------------------------------------------------------------------------------- search

    def encode(self, text: Union[str, Sequence[str]]) -> Tensor:
        """Query embeddings, as Searcher.encode. Shapes: -> (n, query_maxlen, d)."""
        queries = [text] if isinstance(text, str) else list(text)
        return self.checkpoint.queryFromText(queries, to_cpu=True)

    def search(self, text: str, k: int = 10, filter: Filter = None, *,
               exact: bool = False) -> tuple[list[DocId], list[int], list[float]]:
        """The top k documents for one query: (ids, ranks from 1, scores), best first, as Searcher.search.

        Args:
            filter: a payload filter (a qdrant_client Filter, or a dict on the stored metadata), applied by Qdrant
                before scoring.
            exact: ask a Qdrant server to score exactly, bypassing an HNSW graph (a collection made with the
                default `collection_config` has none, and local mode is always exact).
        """
        if not isinstance(text, str):
            raise TypeError(f"search takes one query as a str, got {type(text).__name__}; use search_all for many")
        return self.dense_search(self.encode(text)[0], k, filter, exact=exact)

    def dense_search(self, Q: Tensor, k: int = 10, filter: Filter = None, *,
                     exact: bool = False) -> tuple[list[DocId], list[int], list[float]]:
        """`search` for a query already encoded. Shapes: Q (Lq, d) or (1, Lq, d)."""
        from colbert.search.params import check_k

        k = check_k(k)
        Q = Q[0] if Q.dim() == 3 else Q
        response = self.client.query_points(
            self.collection_name, query=Q.float().tolist(), using=VECTOR_NAME, limit=k,
            query_filter=payload_filter(filter), search_params=models.SearchParams(exact=True) if exact else None,
            with_payload=["doc_id"])
        ids = [p.payload["doc_id"] for p in response.points]
        return ids, list(range(1, len(ids) + 1)), [float(p.score) for p in response.points]

    def search_all(self, queries: Any, k: int = 10, filter: Filter = None, *, exact: bool = False) -> Ranking:
        """Search many queries ({qid: text}, a list, a TSV path or Queries): a Ranking {qid: [(id, rank, score)]}."""
        queries = Queries.cast(queries)
        qids = list(queries.keys())
        encoded = self.encode([queries[q] for q in qids])  # (n, Lq, d)
        data = {}
        for qid, Q in progress(list(zip(qids, encoded)), desc="Searching Qdrant", enabled=self.verbose > 0):
            data[qid] = list(zip(*self.dense_search(Q, k, filter, exact=exact)))
        return Ranking(data=data, provenance={"source": "QdrantIndex.search_all", "collection": self.collection_name,
                                              "k": k})

    def document(self, doc_id: DocId) -> dict:
        """{"id", "text", "metadata"} of a stored document. Raises KeyError when Qdrant has no such document."""
        points = self.client.retrieve(self.collection_name, [point_id(doc_id)], with_payload=True)
        if not points:
            raise KeyError(f"document id {doc_id!r} is not in the Qdrant collection {self.collection_name!r}")
        payload = points[0].payload
        return {"id": payload["doc_id"], "text": payload.get("text", ""), "metadata": payload.get("metadata", {})}

    def __len__(self) -> int:
        return self.client.count(self.collection_name, exact=True).count

    # ----------------------------------------------------------------------------------------------- updates

    def add(self, passages: Union[Mapping[DocId, str], Sequence[str]], ids: Optional[Sequence[DocId]] = None,
            metadata: MetadataLike = None) -> list[DocId]:
        """Encode and add documents, as IndexUpdater.add: a dict {id: text}, or texts with `ids=` (required here:
        Qdrant keeps no counter of free ids). Ids already present raise (remove them first to replace their text).

        Returns:
            The ids added.
        """
        if isinstance(passages, str):
            raise TypeError("add takes a list or a dict of passages, not one str; wrap it in a list")
        if isinstance(passages, Mapping):
            if ids is not None:
                raise TypeError("give ids either as the keys of a dict or as ids=, not both")
            ids, texts = list(passages.keys()), list(passages.values())
        else:
            texts = list(passages)
            if ids is None:
                raise TypeError("QdrantIndex.add needs ids= for a list of texts (or a dict {id: text})")
            ids = list(ids)
        if len(ids) != len(texts):
            raise ValueError(f"got {len(ids):,} ids for {len(texts):,} passages")
        for doc_id in ids:
            check_id(doc_id, "a passage id")
        if len(set(ids)) != len(ids):
            raise ValueError("ids are repeated in this add; nothing was added")
        meta = align_metadata(metadata, ids)
        present = self._present(ids)
        if present:
            raise ValueError(f"{len(present):,} ids are already in the Qdrant collection: "
                             f"{', '.join(map(repr, present[:5]))}; nothing was added. Remove them first.")
        if texts:
            embeddings = self.checkpoint.docFromText(texts, keep_dims=False, to_cpu=True)
            _upload(self.client, self.collection_name, ids, texts, meta, [embeddings], len(ids), show=False)
        return ids

    def remove(self, ids: Iterable[DocId]) -> list[DocId]:
        """Remove documents by id, as IndexUpdater.remove: an id not present raises and nothing is removed."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"remove takes a list of ids, got {type(ids).__name__}; wrap a single id in a list")
        ids = list(dict.fromkeys(ids))
        for doc_id in ids:
            check_id(doc_id, "an id to remove")
        missing = set(ids) - set(self._present(ids))
        if missing:
            shown = [i for i in ids if i in missing][:5]
            raise ValueError(f"{len(missing):,} of the ids to remove are not in the Qdrant collection: "
                             f"{', '.join(map(repr, shown))}; nothing was removed")
        if ids:
            self.client.delete(self.collection_name, points_selector=models.PointIdsList(
                points=[point_id(i) for i in ids]))
        return ids

    def upload(self, ids: Sequence[DocId], texts: Sequence[str], metadata: Sequence[dict],
               embeddings: Sequence[Tensor]) -> None:
        """Upsert documents whose embeddings are already computed (one (n_i, d) tensor each)."""
        _upload(self.client, self.collection_name, list(ids), texts, metadata, [list(embeddings)], len(ids),
                show=False)

    def _present(self, ids: Sequence[DocId]) -> list[DocId]:
        found = self.client.retrieve(self.collection_name, [point_id(i) for i in ids], with_payload=["doc_id"])
        have = {p.payload["doc_id"] for p in found}
        return [i for i in ids if i in have]


class MirroredUpdater:
    """IndexUpdater edits applied to a local index and mirrored to its Qdrant copy (made by `from_index`).

    `add` encodes once (through the updater) and uploads the index's own decompressed embeddings of the new
    passages, so the Qdrant copy stays what `from_index` would export; `remove` removes from both. Qdrant is
    updated at once; the local index still needs `persist_to_disk()` (delegated). Unknown ids and other bad input
    raise before either side changes.

        mirrored = MirroredUpdater(IndexUpdater(config=searcher.config, searcher=searcher), store)
        mirrored.add({"doc-9001": "new text"}, metadata={"doc-9001": {"year": 2024}})
        mirrored.remove(["doc-3"]); mirrored.persist_to_disk()
    """

    def __init__(self, updater: Any, store: QdrantIndex) -> None:
        self.updater, self.store = updater, store

    def add(self, passages: Any, ids: Optional[Sequence[DocId]] = None, metadata: MetadataLike = None
            ) -> list[DocId]:
        if isinstance(passages, Mapping):
            texts = list(passages.values())
            present = self.store._present(list(passages.keys()))
        else:
            texts = list(Collection.cast(passages).data) if isinstance(passages, Collection) else list(passages)
            present = self.store._present(list(ids)) if ids is not None else []
        if present:
            raise ValueError(f"{len(present):,} ids are already in the Qdrant collection: {present[:5]}; nothing "
                             "was added")
        new_ids = self.updater.add(passages, ids=ids, metadata=metadata)
        if not new_ids:
            return new_ids
        loaded = self.updater.loaded
        pids = torch.tensor([loaded.pid_of(i) for i in new_ids])
        self.store.upload(new_ids, texts, align_metadata(metadata, new_ids), decompressed(loaded, pids))
        return new_ids

    def remove(self, ids: Iterable[DocId]) -> list[DocId]:
        ids = list(ids) if not isinstance(ids, (str, bytes)) else ids
        removed = self.updater.remove(ids)  # raises, changing nothing, on unknown ids
        if removed:
            self.store.client.delete(self.store.collection_name, points_selector=models.PointIdsList(
                points=[point_id(i) for i in removed]))
        return removed

    def persist_to_disk(self) -> None:
        self.updater.persist_to_disk()


def decompressed(loaded: Any, pids: Tensor) -> list[Tensor]:
    """The decompressed embeddings of passages of a LoadedIndex, one (n_i, d) float32 tensor each."""
    codes, residuals, lengths = loaded.lookup(pids)
    return list(loaded.codec.decompress(codes, residuals).split(lengths.tolist()))


def _texts_for(ids: list[DocId], collection: Any) -> list[str]:
    collection = Collection.cast(collection)
    by_id = {collection.id_of(p): collection[p] for p in range(len(collection))}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"the collection lacks {len(missing):,} documents of the index, e.g. {missing[:5]}")
    return [by_id[i] for i in ids]


def _upload(client: QdrantClient, name: str, ids: list[DocId], texts: Sequence[str], metadata: Sequence[dict],
            batches: Iterable[list[Tensor]], batch_size: int, show: bool) -> None:
    """Upsert documents in order, their embeddings coming in batches (lists of (n_i, d) tensors)."""
    start = 0
    for embeddings in progress(batches, desc="Uploading to Qdrant", enabled=show):
        points = [
            models.PointStruct(id=point_id(ids[i]), vector={VECTOR_NAME: E.float().tolist()},
                               payload={"doc_id": ids[i], "text": texts[i], "metadata": metadata[i]})
            for i, E in zip(range(start, start + len(embeddings)), embeddings)
        ]
        client.upsert(name, points=points, wait=True)
        start += len(embeddings)
    logger.info("Uploaded %s documents to the Qdrant collection %s", f"{start:,}", name)


__all__ = ["MirroredUpdater", "QdrantIndex", "decompressed", "VECTOR_NAME", "collection_config", "payload_filter", "point_id"]
