"""What each endpoint does, apart from HTTP: validate against the limits, encode, search, rerank, edit.

Every request reads one published Searcher of its index (`served.searcher`, taken once) from start to end, so a
write committed meanwhile never shows half of itself. Model calls run on the one model thread (batched for
queries), PLAID searches on the search threads, commits on the write thread; the event loop only routes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Optional, Sequence

import torch

from colbert.index.versions import IndexChangedError
from colbert.indexing.platform import release_free_memory
from colbert.infra.device import cpu_has_native_bf16
from colbert.server.batching import QueryBatcher, Workers
from colbert.server.config import INDEX_NAME, ServerConfig
from colbert.server.indexes import Registry, ServedIndex
from colbert.server.limits import ApiError, Limits, invalid
from colbert.server.metrics import Metrics

logger = logging.getLogger(__name__)

ENDPOINTS = ("/v1/search", "/v1/rerank", "/v1/encode", "/v1/documents", "/health", "/ready", "/metrics")


class Service:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = Registry(config.indexes)
        self.limits = Limits(config.max_body_bytes, config.max_k, config.max_batch, config.max_documents,
                             config.max_text_chars)
        self.metrics = Metrics(self.registry, ENDPOINTS)
        self.workers = Workers(config.search_threads, busy=lambda: self.metrics.requests_in_flight > 1)
        self.batchers: dict[str, QueryBatcher] = {}
        self.rerank_bf16 = config.rerank_precision == "bf16" or (config.rerank_precision == "auto"
                                                                 and cpu_has_native_bf16())
        self.query_bf16 = config.query_precision == "bf16"
        self.rerank_batchers: dict[str, QueryBatcher] = {}  # the rerank queries' batchers: see _load_all
        self._loading: Optional[asyncio.Task] = None

    # ------------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Begin loading the indexes in the background: /health answers at once, /ready once they are loaded."""
        for served in self.registry:
            served.write_lock = asyncio.Lock()
        self._loading = asyncio.get_running_loop().create_task(self._load_all())

    async def _load_all(self) -> None:
        for served in self.registry:
            # before loading: `served.ready` turns true on the model thread, and a request may be answered from
            # then on, before this coroutine resumes
            self.batchers[served.name] = self._batcher(served, self.query_bf16)
            # rerank encodes its query in the rerank precision: with one precision for both, one batcher
            self.rerank_batchers[served.name] = (self.batchers[served.name] if self.rerank_bf16 == self.query_bf16
                                                 else self._batcher(served, self.rerank_bf16))
            try:
                await self.workers.on_model(served.load, self.config.checkpoint, self.rerank_bf16 or self.query_bf16)
            except Exception as e:  # any failure: that index stays unready, the others are served
                served.error = f"{type(e).__name__}"
                logger.error("Could not load the index %s from %s: %s", served.name, served.spec.path, e)

    def _batcher(self, served: ServedIndex, bf16: bool) -> QueryBatcher:
        """Queries of `served` encoded together on the model thread, in bf16 (CPU only, Checkpoint.query) or fp32."""
        precision = "bf16" if bf16 else "fp32"
        return QueryBatcher(lambda texts: served.searcher.encode(texts, precision=precision), self.workers,
                            self.config.batch_window_ms / 1000, self.config.encode_batch,
                            self.metrics.batch_size.observe, lambda: self.metrics.queries_in_flight)

    async def wait_loaded(self) -> None:
        if self._loading is not None:
            await self._loading

    async def stop(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        for batcher in {*self.batchers.values(), *self.rerank_batchers.values()}:
            await batcher.close()
        self.workers.shutdown()

    def readiness(self) -> dict:
        states = {s.name: "ready" if s.ready else ("failed" if s.error else "loading") for s in self.registry}
        return {"ready": self.registry.ready, "indexes": states}

    # ------------------------------------------------------------------------------------------- lookups

    def served(self, name: Optional[str]) -> ServedIndex:
        """The index a request names (or the only one); never a path: only names in the registry exist."""
        if name is None:
            if len(self.registry.indexes) != 1:
                raise invalid("index", f"this server serves several indexes ({', '.join(self.registry.names())}); "
                              "name one with \"index\"")
            served = next(iter(self.registry))
        else:
            if not INDEX_NAME.match(name):
                raise invalid("index", "an index name is 1-64 letters, digits, '.', '_' or '-' (not a path); this "
                              f"server serves: {', '.join(self.registry.names())}")
            served = self.registry.indexes.get(name)
            if served is None:
                raise ApiError(404, "unknown_index", f"no index named {name!r}; this server serves: "
                               f"{', '.join(self.registry.names())}", "index")
        if not served.ready:
            what = "could not be loaded (see the server log)" if served.error else "is still loading"
            raise ApiError(503, "not_ready", f"the index {served.name!r} {what}", "index",
                           headers=None if served.error else {"Retry-After": "5"})
        return served

    def known_ids(self, served: ServedIndex, loaded: Any, ids: Sequence[Any], field: str) -> list:
        """The ids as the index stores them, each once, in order; 422 naming a few unknown ones."""
        ids = list(dict.fromkeys(served.doc_id(i, loaded) for i in self.limits.ids(ids, field)))
        unknown = [i for i in ids if i not in loaded]  # LoadedIndex.find: no KeyError built per id
        if unknown:
            raise invalid(field, f"{len(unknown):,} of the ids are not in the index {served.name!r}: "
                          f"{', '.join(map(repr, unknown[:5]))}{', ...' if len(unknown) > 5 else ''}")
        return ids

    # ------------------------------------------------------------------------------------------- reads

    async def search(self, body: Any, timing: Optional[dict] = None) -> dict:
        """`timing`, if given, gets the stages' ms: queue and encode (QueryBatcher.encode), search, total."""
        start = time.perf_counter()
        served = self.served(body.index)
        searcher = served.searcher  # this request's state, whatever is published meanwhile
        if (body.query is None) == (body.queries is None):
            raise invalid("query", "send either \"query\" (one string) or \"queries\" (a list of strings)")
        if body.query is not None:
            texts = [self.limits.text(body.query, "query")]
        else:
            texts = self.limits.texts(body.queries, "queries", self.limits.max_batch, "--max-batch")
        k = self.limits.k(body.k)
        ids = None if body.doc_ids is None else self.known_ids(served, searcher.loaded, body.doc_ids, "doc_ids")
        if ids == []:
            raise invalid("doc_ids", "doc_ids is empty; leave it out to search the whole index")
        encoded = await self.batchers[served.name].encode(texts, timing)
        encoded_at = time.perf_counter()
        search = functools.partial(searcher.dense_search, diversity=body.diversity)
        found = await asyncio.gather(*(self.workers.on_search(search, Q, k, None, ids) for Q in encoded))
        _note(timing, "search", encoded_at)
        results = [await self._hits(served, searcher, ids_, scores, body.include_text) for ids_, _, scores in found]
        _note(timing, "total", start)
        return {"index": served.name, "documents": searcher.loaded.num_live,
                "results": results[0] if body.query is not None else results}

    async def rerank(self, body: Any, timing: Optional[dict] = None) -> dict:
        """`timing`, if given, gets the stages' ms: queue and encode (the query, QueryBatcher.encode), score (the
        documents: encoding and MaxSim, or MaxSim over their stored embeddings), total."""
        start = time.perf_counter()
        served = self.served(body.index)
        searcher = served.searcher
        self.limits.text(body.query, "query")
        k = self.limits.k(body.k)
        if (body.documents is None) == (body.doc_ids is None):
            raise invalid("documents", "send either \"documents\" (texts) or \"doc_ids\" (documents of the index)")
        if body.documents is not None:
            texts = self.limits.texts(body.documents, "documents", self.limits.max_documents, "--max-documents")
            Q = (await self.rerank_batchers[served.name].encode([body.query], timing))[0]
            encoded_at = time.perf_counter()
            scores = await self.workers.on_model(self._score_texts, searcher, Q, texts)  # (n,)
            _note(timing, "score", encoded_at)
            top = scores.topk(min(k, scores.numel()))
            results = [{"index": int(i), "score": float(s), "rank": r + 1}
                       for r, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()))]
            _note(timing, "total", start)
            return {"results": results, "precision": self._rerank_precision(searcher)}
        ids = self.known_ids(served, searcher.loaded, body.doc_ids, "doc_ids")
        if not ids:
            raise invalid("doc_ids", "doc_ids is empty; send at least one document id")
        Q = (await self.rerank_batchers[served.name].encode([body.query], timing))[0]
        encoded_at = time.perf_counter()
        scores = await self.workers.on_search(_stored_maxsim, searcher, Q, ids)  # (n,)
        _note(timing, "score", encoded_at)
        top = scores.topk(min(k, scores.numel()))
        chosen = [ids[i] for i in top.indices.tolist()]
        results = await self._hits(served, searcher, chosen, top.values.tolist(), body.include_text)
        _note(timing, "total", start)
        return {"index": served.name, "results": results, "precision": self._rerank_precision(searcher)}

    def _rerank_precision(self, searcher: Any) -> str:
        """What a rerank answer says of its encoding: bf16 only where torch encodes on the CPU (not an ONNX export,
        not CUDA, which keeps its fp16 autocast)."""
        checkpoint = searcher.checkpoint
        bf16 = self.rerank_bf16 and checkpoint.device.type == "cpu" and checkpoint.encodes_with_torch
        return "bf16" if bf16 else "fp32"

    def _score_texts(self, searcher: Any, Q: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """MaxSim of Q against documents encoded now (bf16 autocast on CPUs with native bf16). Model thread."""
        from colbert.indexing.encoder import encode_passages
        from colbert.modeling.scoring import colbert_score_packed

        bf16 = self._rerank_precision(searcher) == "bf16"
        D, doclens = encode_passages(searcher.checkpoint, texts, searcher.config.index_bsize, show_progress=False,
                                     bf16=bf16)
        return colbert_score_packed(Q.float(), D.float(), torch.tensor(doclens))

    async def encode(self, body: Any) -> dict:
        served = self.served(body.index)
        searcher = served.searcher
        texts = self.limits.texts(body.texts, "texts", self.limits.max_batch, "--max-batch")
        if body.kind == "query":
            vectors = await self.batchers[served.name].encode(texts)
        else:
            vectors = await self.workers.on_model(
                lambda: searcher.checkpoint.docFromText(texts, keep_dims=False, to_cpu=True))
        return {"embeddings": [v.float().tolist() for v in vectors], "lengths": [int(v.size(0)) for v in vectors],
                "dim": int(searcher.loaded.dim)}

    async def _hits(self, served: ServedIndex, searcher: Any, ids: list, scores: list,
                    include_text: bool) -> list[dict]:
        hits = [{"doc_id": d, "rank": r + 1, "score": s} for r, (d, s) in enumerate(zip(ids, scores))]
        if include_text:  # the first call reads documents.jsonl or the collection file: off the event loop
            stored = await self.workers.on_search(lambda: [served.document_of(searcher, d) for d in ids])
            for hit, document in zip(hits, stored):
                hit.update(document)
        return hits

    # ------------------------------------------------------------------------------------------- writes

    async def add(self, body: Any) -> dict:
        served = self.served(body.index)
        if not body.documents:
            raise invalid("documents", "documents is empty; send {\"id\": \"text\", ...}")
        self.limits.ids(list(body.documents), "documents")
        documents = {}
        for key, text in body.documents.items():
            documents[served.doc_id(key)] = self.limits.text(text, f"documents.{key}")
        metadata = None
        if body.metadata is not None:
            extra = [key for key in body.metadata if key not in body.documents]
            if extra:
                raise invalid("metadata", f"metadata names ids that are not in documents: {extra[:5]}")
            metadata = {served.doc_id(key): value for key, value in body.metadata.items()}
        return await self._write(served, added=documents, metadata=metadata)

    async def remove(self, body: Any) -> dict:
        served = self.served(body.index)
        if not body.doc_ids:
            raise invalid("doc_ids", "doc_ids is empty; send the ids to remove")
        self.limits.ids(body.doc_ids, "doc_ids")
        return await self._write(served, removed=list(body.doc_ids))  # matched to the index's ids under the lock

    async def _write(self, served: ServedIndex, added: Optional[dict] = None, removed: Optional[list] = None,
                     metadata: Optional[dict] = None) -> dict:
        """One commit, shielded: a client that goes away does not stop it half-way, nor free the lock early."""
        task = asyncio.get_running_loop().create_task(self._locked_write(served, added, removed, metadata))
        return await asyncio.shield(task)

    async def _locked_write(self, served: ServedIndex, added: Optional[dict], removed: Optional[list],
                            metadata: Optional[dict]) -> dict:
        try:
            await asyncio.wait_for(served.write_lock.acquire(), timeout=self.config.write_wait_s)
        except asyncio.TimeoutError:
            raise ApiError(409, "write_in_progress", f"another change to {served.name!r} did not finish within "
                           f"{self.config.write_wait_s:g} s; retry later", "index") from None
        try:
            return await self._commit(served, added, removed, metadata)
        finally:
            served.write_lock.release()

    async def _commit(self, served: ServedIndex, added: Optional[dict], removed: Optional[list],
                      metadata: Optional[dict]) -> dict:
        from colbert.index_updater import IndexUpdater

        current = served.searcher
        if added:
            present = [i for i in added if i in current.loaded]
            if present:
                raise ApiError(409, "conflict", f"{len(present):,} ids are already in {served.name!r}: "
                               f"{', '.join(map(repr, present[:5]))}; nothing was added (delete them first to "
                               "replace their text)", "documents")
        if removed:
            removed = self.known_ids(served, current.loaded, removed, "doc_ids")
            if len(removed) >= current.loaded.num_live:
                raise invalid("doc_ids", f"removing all {current.loaded.num_live:,} documents would leave an "
                              "empty index; build a new one instead")
        private = served.private_copy()
        updater = IndexUpdater(searcher=private, checkpoint=served.writer_checkpoint(), drift_warning=None)
        try:
            if added:  # on the write thread, beside the query batches of the model thread (own tokenizer)
                await self.workers.on_write(lambda: updater.add(dict(added), metadata=metadata))
            if removed:
                await self.workers.on_write(updater.remove, removed)
            await self.workers.on_write(updater.persist_to_disk)
        except IndexChangedError:
            await self.workers.on_write(self._reopen, served)
            raise ApiError(409, "index_changed", f"the index {served.name!r} was changed on disk by another "
                           "process; the server has reopened it. Check the documents and retry.", "index") from None
        except (ValueError, TypeError) as e:
            raise invalid("documents" if added else "doc_ids", _scrub(str(e), served, current)) from None
        served.publish(private)
        served.remember(added or {}, removed or [])
        await self.workers.on_write(release_free_memory)  # what the commit freed, back to the OS
        logger.info("Index %s: +%d -%d documents, %s now", served.name, len(added or {}), len(removed or []),
                    f"{private.loaded.num_live:,}")
        out = {"index": served.name, "documents": private.loaded.num_live}
        if added:
            out["added"] = list(added)
        if removed:
            out["removed"] = list(removed)
        return out

    def _reopen(self, served: ServedIndex) -> None:
        from colbert.search.index import LoadedIndex

        fresh = served.private_copy()
        handle = fresh.index_handle
        with handle.writing():
            handle.publish(LoadedIndex.open(fresh.index, mmap=handle.mmap), pending=False)
        served.publish(fresh)


def _note(timing: Optional[dict], stage: str, since: float) -> None:
    if timing is not None:
        timing[stage] = (time.perf_counter() - since) * 1e3


def _stored_maxsim(searcher: Any, Q: torch.Tensor, ids: list) -> torch.Tensor:
    """MaxSim of Q against the index's stored (decompressed) embeddings of `ids`, in their order. Search thread."""
    pids = torch.tensor([searcher.loaded.pid_of(i) for i in ids], dtype=torch.int64, device=searcher.device)
    with torch.inference_mode():
        return searcher.ranker.maxsim(Q.to(searcher.device, torch.float32), pids)  # (n,)


def _scrub(message: str, served: ServedIndex, searcher: Any) -> str:
    """A library message without the server's paths (they name the index folder)."""
    for path in {str(searcher.index), str(served.spec.path), str(getattr(searcher.loaded, "path", ""))} - {""}:
        message = message.replace(path, served.name)
    return message
