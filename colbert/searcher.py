"""Searcher: open an index and its checkpoint, then search one query or many with PLAID (or exhaustively).

Config precedence (lowest first): the checkpoint's `artifact.metadata`, the index's `metadata.json`, `config=`,
`Run()`. PLAID's ncells / centroid_score_threshold / ndocs are derived per call from k and the config
(colbert.search.params) and never written back. Results carry the user's document ids (`doc_ids.json`; pids
0..P-1 for indexes without one).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from colbert.data import Collection, Queries, Ranking
from colbert.errors import CheckpointError
from colbert.infra.config import ColBERTConfig
from colbert.infra.device import resolve_device
from colbert.infra.run import Run
from colbert.search import plaid
from colbert.search.index import DocId, LoadedIndex
from colbert.search.params import check_k, search_params
from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

SEARCH_ALL_BATCH = 128  # queries encoded (and, exhaustively, scored) at once by search_all: 128 x 32 x 128 x 4 B = 2 MiB

TextQueries = Union[str, Sequence[str], Mapping[Any, str], Queries]
SearchResult = tuple[list[DocId], list[int], list[float]]


def resolve_index_path(index: Union[str, os.PathLike], index_root: str) -> Path:
    """`index` under `index_root` (the reference's rule), else `index` as a path of its own."""
    for candidate in (Path(index_root) / index, Path(index)):
        if (candidate / "metadata.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"No index named {str(index)!r}: neither {Path(index_root) / index} nor {Path(index)} holds a metadata.json. "
        "Pass the index folder, or its name with index_root=..., or build it with Indexer.index(name, collection)."
    )


def _as_int_tensor(ids: Union[Tensor, list]) -> Optional[Tensor]:
    """`ids` as an int64 tensor when they are all integers (not bools), else None."""
    try:
        t = torch.as_tensor(ids)
    except (TypeError, ValueError, RuntimeError):
        return None
    if t.dtype in (torch.bool, torch.uint8) or t.is_floating_point() or t.is_complex() or t.dim() != 1:
        return None
    return t.long()


def _looks_like_a_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith(("./", "../", "~")) or os.sep + os.sep in name


class Searcher:
    """Search a PLAID index (the reference's Searcher).

    Args:
        index: an index name under `index_root` (default `Run()`'s root/experiment/indexes/), or its folder.
        checkpoint: the model that encodes queries; default the one the index was built with. An explicit one wins.
        collection: the passages (a TSV path, list, dict or Collection), kept as `self.collection` for the caller;
            search never reads them.
        config: overrides, e.g. `ColBERTConfig(ncells=4, ndocs=4096)` or `load_index_with_mmap=False`.
        index_root: the folder holding named indexes.
        verbose: 0 silent, 1 progress bars, 2 and 3 also log the config.

    Codes and residuals are memory-mapped when searching on CPU (no extra RAM; pages are read on first use) unless
    `config.load_index_with_mmap` is set explicitly; on a GPU they are read into device memory.
    """

    def __init__(self, index: Union[str, os.PathLike], checkpoint: Optional[Union[str, os.PathLike]] = None,
                 collection: Any = None, config: Optional[ColBERTConfig] = None,
                 index_root: Optional[str] = None, verbose: int = 3) -> None:
        self.verbose = verbose
        initial = Run().resolve(config=config)  # the index's and checkpoint's configs sit below it
        self.index = str(resolve_index_path(index, index_root or initial.index_root_))
        self.device = resolve_device(initial)
        mmap = self.device.type == "cpu"
        if "load_index_with_mmap" in initial.assigned:
            mmap = bool(initial.load_index_with_mmap)
        if mmap and self.device.type != "cpu":
            raise ValueError(f"A memory-mapped index can only be searched on CPU, not {self.device}; set "
                             "ColBERTConfig(load_index_with_mmap=False) or gpus=0")
        self.loaded = LoadedIndex.open(self.index, mmap=mmap)
        self.index_config = self.loaded.config
        name = str(checkpoint) if checkpoint is not None else self.index_config.checkpoint
        self.checkpoint_config = self._checkpoint_config(name, given=checkpoint is not None)
        self.config = ColBERTConfig.from_existing(self.checkpoint_config, self.index_config, initial)
        self.config.configure(checkpoint=name, load_index_with_mmap=mmap)
        self._collection = collection
        self.checkpoint = self._load_checkpoint(name)
        self.ranker = plaid.SearchIndex.from_loaded(self.loaded, self.device)
        if verbose > 1:
            logger.info("Searcher on %s (%s passages, nbits=%d) with %s on %s", self.index,
                        f"{self.loaded.num_passages:,}", self.loaded.nbits, name, self.device)

    def _checkpoint_config(self, name: Optional[str], given: bool) -> Optional[ColBERTConfig]:
        if not name:
            raise ValueError(f"The index at {self.index} names no checkpoint; pass Searcher(index, checkpoint=...)")
        if not given and _looks_like_a_path(name) and not os.path.exists(os.path.expanduser(name)):
            raise FileNotFoundError(f"The index at {self.index} was built with the checkpoint {name}, which does not "
                                    "exist here; pass Searcher(index, checkpoint=<its folder or hub name>)")
        if given and self.index_config.checkpoint and name != self.index_config.checkpoint:
            logger.info("Encoding queries with %s; the index at %s was built with %s", name, self.index,
                        self.index_config.checkpoint)
        stored = ColBERTConfig.load_from_checkpoint(name)
        if stored is not None and "dim" in stored.assigned and stored.dim != self.loaded.dim:
            raise CheckpointError(
                f"The checkpoint {name} makes {stored.dim}-dim embeddings but the index at {self.index} holds "
                f"{self.loaded.dim}-dim ones; search it with the checkpoint it was built with "
                f"({self.index_config.checkpoint})."
            )
        return stored

    def _load_checkpoint(self, name: str) -> Any:
        from colbert.modeling.checkpoint import Checkpoint

        try:
            return Checkpoint(name, colbert_config=self.config, verbose=self.verbose, device=self.device)
        except CheckpointError as e:
            raise CheckpointError(f"Cannot search {self.index} (dim {self.loaded.dim}) with the checkpoint {name}: "
                                  f"{e}") from e

    def configure(self, **kwargs: Any) -> None:
        """Set config fields, e.g. `searcher.configure(ncells=4, ndocs=4096)`; they apply from the next search."""
        self.config.configure(**kwargs)

    @property
    def collection(self) -> Collection:
        """The passages given as `collection=` (or the index's collection file, if it exists here), loaded lazily."""
        if not isinstance(self._collection, Collection):
            source = self._collection if self._collection is not None else self.config.collection
            if source is None or (isinstance(source, str) and not os.path.exists(source)):
                raise FileNotFoundError(f"No collection for {self.index}: the index names {source!r}, which does not "
                                        "exist here; pass Searcher(..., collection=...)")
            self._collection = Collection.cast(source)
        return self._collection

    def encode(self, text: Union[str, Sequence[str]], full_length_search: bool = False) -> Tensor:
        """Query embeddings: (n, query_maxlen, d), or longer with full_length_search (one query per call).

        Queries longer than query_maxlen - 3 wordpieces are truncated, as in the reference, unless
        full_length_search; an empty query encodes as [CLS] [Q] [SEP] + [MASK]s.
        """
        queries = [text] if isinstance(text, str) else text
        self.checkpoint.query_tokenizer.query_maxlen = self.config.query_maxlen
        bsize = SEARCH_ALL_BATCH if len(queries) > SEARCH_ALL_BATCH else None
        return self.checkpoint.queryFromText(queries, bsize=bsize, full_length_search=full_length_search)

    def search(self, text: str, k: int = 10, filter_fn: Optional[plaid.FilterFn] = None,
               full_length_search: bool = False, pids: Optional[Iterable[DocId]] = None, *,
               exact: bool = False) -> SearchResult:
        """The top k documents for one query: (ids, ranks from 1, scores), best first.

        Args:
            text: the query.
            k: results wanted (fewer come back when fewer documents qualify, or when ndocs // 4 < k).
            filter_fn: called with the candidate pids (int32 tensor, positions in the index), returns the pids to
                keep (a tensor); applied before scoring.
            full_length_search: encode the whole query (up to 500 tokens) instead of truncating it.
            pids: restrict the search to these document ids (the user's ids); every listed document is scored
                exactly, as in the reference.
            exact: skip PLAID and score every document by MaxSim over its decompressed embeddings.
        """
        if not isinstance(text, str):
            raise TypeError(f"search takes one query as a str, got {type(text).__name__}; use search_all for many")
        k = check_k(k)
        Q = self.encode(text, full_length_search=full_length_search)
        return self.dense_search(Q, k, filter_fn=filter_fn, pids=pids, exact=exact)

    def dense_search(self, Q: Tensor, k: int = 10, filter_fn: Optional[plaid.FilterFn] = None,
                     pids: Optional[Iterable[DocId]] = None, *, exact: bool = False) -> SearchResult:
        """`search` for a query already encoded. Shapes: Q (1, Lq, d) or (Lq, d)."""
        k = check_k(k)
        Q = self._check_query(Q)
        allowed = None if pids is None else self.pids_of(pids)
        top_pids, top_scores = self._search_one(Q, k, filter_fn, allowed, exact)
        return self._result(top_pids, top_scores)

    def search_all(self, queries: TextQueries, k: int = 10, filter_fn: Optional[plaid.FilterFn] = None,
                   full_length_search: bool = False, qid_to_pids: Optional[Mapping[Any, Iterable[DocId]]] = None,
                   *, exact: bool = False) -> Ranking:
        """Search many queries ({qid: text}, a list, a TSV path or Queries) in batches of SEARCH_ALL_BATCH, keeping
        only the top k of each: memory grows with the number of queries times k, not with the index.

        Args:
            qid_to_pids: per query, the document ids to restrict it to (as `search(pids=...)`); every qid needs one.
            full_length_search: each query is encoded at its own length (one at a time).
            Other arguments as `search`.

        Returns:
            A Ranking {qid: [(id, rank, score), ...]}.
        """
        k = check_k(k)
        queries = Queries.cast(queries)
        qids = list(queries.keys())
        if qid_to_pids is not None:
            missing = [qid for qid in qids if qid not in qid_to_pids]
            if missing:
                raise ValueError(f"qid_to_pids has no entry for {len(missing):,} of the queries, e.g. {missing[:5]}")
        data: dict[Any, list[tuple]] = {}
        starts = range(0, len(qids), SEARCH_ALL_BATCH)
        for start in progress(starts, desc="Searching", enabled=None if self.verbose > 0 else False, unit="batch"):
            batch = qids[start:start + SEARCH_ALL_BATCH]
            encoded = self._encode_batch([queries[qid] for qid in batch], full_length_search)
            if exact and filter_fn is None and qid_to_pids is None and not full_length_search:
                tops = plaid.exhaustive_search(self.ranker, self._stack(encoded), k)  # one pass for the batch
            else:
                tops = [self._search_one(Q.to(self.device, torch.float32), k, filter_fn,
                                         None if qid_to_pids is None else self.pids_of(qid_to_pids[qid]), exact)
                        for qid, Q in zip(batch, encoded)]
            for qid, (top_pids, top_scores) in zip(batch, tops):
                data[qid] = list(zip(*self._result(top_pids, top_scores)))
        provenance = {"source": "Searcher.search_all", "index": self.index, "k": k, "exact": exact,
                      "queries": queries.provenance()}
        return Ranking(data=data, provenance=provenance, run_dir=Run().config.path_)  # where save() puts names

    def pids_of(self, ids: Iterable[DocId]) -> Tensor:
        """Positions in the index of document ids (sorted, unique), for `filter_fn`s over string ids.

        Raises:
            ValueError: some ids are not in the index (the message lists a few).
        """
        if isinstance(ids, (str, bytes)):
            raise TypeError("pids must be a collection of document ids, not a single str; wrap it in a list")
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        fast = _as_int_tensor(ids) if self.loaded.doc_ids is None else None
        if fast is not None:  # ids are pids: checked in one go, allow-lists may be long
            outside = (fast < 0) | (fast >= self.loaded.num_passages)  # (n,)
            outside[~outside] = self.loaded.doclens[fast[~outside]] == 0  # removed passages are not documents
            bad = fast[outside].tolist()
            pids = fast
        else:
            pids, bad = [], []
            for doc_id in ids:
                try:
                    pids.append(self.loaded.pid_of(doc_id))
                except (KeyError, TypeError):
                    bad.append(doc_id)
        if bad:
            raise ValueError(f"{len(bad):,} of the {len(ids):,} ids in pids are not documents of the index at "
                             f"{self.index}: {', '.join(map(repr, bad[:5]))}{', ...' if len(bad) > 5 else ''}")
        return torch.unique(torch.as_tensor(pids, dtype=torch.int64)).to(self.device)

    def _check_query(self, Q: Tensor) -> Tensor:
        if not isinstance(Q, Tensor):
            raise TypeError(f"Q must be a torch.Tensor of query embeddings, got {type(Q).__name__}")
        if Q.dim() == 3 and Q.size(0) == 1:
            Q = Q[0]
        if Q.dim() != 2 or Q.size(1) != self.loaded.dim or Q.size(0) == 0:
            raise ValueError(f"Q must hold one query's embeddings, shaped (1, Lq, {self.loaded.dim}) or "
                             f"(Lq, {self.loaded.dim}); got {tuple(Q.shape)}. Use search_all for many queries.")
        return Q.to(self.device, torch.float32)

    def _encode_batch(self, texts: list[str], full_length_search: bool) -> list[Tensor]:
        """Each query's embeddings (Lq, d); with full_length_search one at a time, each at its own length."""
        if full_length_search:
            return [self.encode(text, full_length_search=True)[0] for text in texts]
        return list(self.encode(texts))

    def _stack(self, encoded: list[Tensor]) -> Tensor:
        return torch.stack(encoded).to(self.device, torch.float32)  # (B, Lq, d)

    def _search_one(self, Q: Tensor, k: int, filter_fn: Optional[plaid.FilterFn], allowed: Optional[Tensor],
                    exact: bool) -> tuple[Tensor, Tensor]:
        """One query on pids. Shapes: Q (Lq, d) float32 on the device -> ((<= k,), (<= k,))."""
        with torch.inference_mode():
            if allowed is not None and filter_fn is not None:
                allowed = plaid.apply_filter(filter_fn, allowed.int(), self.loaded.num_passages)
            elif filter_fn is not None and exact:
                everything = torch.arange(self.loaded.num_passages, dtype=torch.int32, device=self.device)
                allowed = plaid.apply_filter(filter_fn, everything, self.loaded.num_passages)
            if allowed is not None or exact:
                if allowed is not None and allowed.numel() == 0:
                    return allowed, Q.new_empty(0)
                return plaid.exhaustive_search(self.ranker, Q[None], k, allowed)[0]
            params = search_params(k, self.config)
            return plaid.plaid_search(self.ranker, Q, params, k, probe_tokens=self.config.query_maxlen,
                                      filter_fn=filter_fn)

    def _result(self, pids: Tensor, scores: Tensor) -> SearchResult:
        pid_list = pids.tolist()
        doc_ids = self.loaded.doc_ids
        ids = pid_list if doc_ids is None else [doc_ids[p] for p in pid_list]
        return ids, list(range(1, len(ids) + 1)), scores.tolist()
