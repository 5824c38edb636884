"""Searcher: open an index and its checkpoint, then search one query or many with PLAID (or exhaustively).

Config precedence (lowest first): the checkpoint's `artifact.metadata`, the index's `metadata.json`, `config=`,
`Run()`. PLAID's ncells / centroid_score_threshold / ndocs are derived per call from k and the config
(colbert.search.params) and never written back. Results carry the user's document ids (`doc_ids.json`; pids
0..P-1 for indexes without one).

Thread safety: the index is held by an IndexHandle (`searcher.index_handle`), shared with the IndexUpdaters that
change it. Every search reads one snapshot of it (search_all: one for the whole call), so searches in many threads
may run while an updater adds, removes or persists in another: each sees the index before a change or after it,
never half of it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Hashable, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from colbert.data import Collection, Queries, Ranking
from colbert.errors import CheckpointError
from colbert.indexing.documents import Documents, metadata_filter, read_documents
from colbert.infra.config import ColBERTConfig, check_config
from colbert.modeling.layouts import read_layout
from colbert.infra.device import resolve_device
from colbert.index.loaded import IndexHandle, Snapshot
from colbert.infra.run import Run
from colbert.search import plaid
from colbert.search.diversity import candidates_for, check_diversity, diversify
from colbert.index.loaded import DocId, LoadedIndex
from colbert.search.params import check_k, scoring_at_least, search_params
from colbert.modeling.hf_format import check_checkpoint_name
from colbert.utils.checks import check_path, check_verbose
from colbert.utils.progress import progress

if TYPE_CHECKING:
    from colbert.modeling.explain import Explanation
    from colbert.modeling.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

SEARCH_ALL_BATCH = 128  # queries encoded (and, exhaustively, scored) at once by search_all: 128 x 32 x 128 x 4 B = 2 MiB

TextQueries = Union[str, Sequence[str], Mapping[Hashable, str], Queries]
CollectionLike = Union[str, os.PathLike, Sequence[str], Mapping[DocId, str], Collection]
SearchResult = tuple[list[DocId], list[int], list[float]]


def resolve_index_path(index: Union[str, os.PathLike], index_root: str) -> Path:
    """`index` under `index_root` (the reference's rule), else `index` as a path of its own. The name "" is
    index_root itself (llama-index's ColbertIndex builds and searches its index there)."""
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


def _check_filter(filter_fn: object) -> None:
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be a function of the candidate pids (or None), got {type(filter_fn).__name__}")


def _check_finite(Q: Tensor, what: str) -> None:
    if not bool(torch.isfinite(Q).all()):
        raise ValueError(f"{what} hold NaN or infinite values, so no document could be ranked; the checkpoint's "
                         "weights are probably corrupt (check them with torch.isfinite), or the embeddings passed "
                         "to dense_search were")


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

    Codes and residuals are read into memory, as the reference does, unless `config.load_index_with_mmap=True`
    (CPU only): then they are memory-mapped (no extra RAM, pages read on first use), and the index files must not be
    changed in place while the Searcher is open (this library only ever replaces them by rename; a `cp` over a live
    index could then kill the process with SIGBUS).
    """

    def __init__(self, index: Union[str, os.PathLike], checkpoint: Optional[Union[str, os.PathLike]] = None,
                 collection: Optional[CollectionLike] = None, config: Optional[ColBERTConfig] = None,
                 index_root: Optional[str] = None, verbose: int = 3) -> None:
        self.verbose = check_verbose(verbose)
        index = check_path(index, "index", allow_empty=True)  # "": index_root itself, as Indexer
        checkpoint = None if checkpoint is None else check_path(checkpoint, "checkpoint")
        index_root = None if index_root is None else check_path(index_root, "index_root")
        check_config(config)
        initial = Run().resolve(config=config)  # the index's and checkpoint's configs sit below it
        if checkpoint is not None:
            check_checkpoint_name(checkpoint)  # before the index is read: CheckpointError naming a missing folder
        self.index = str(resolve_index_path(index, index_root or initial.index_root_))
        self.device = resolve_device(initial)
        mmap = bool(initial.load_index_with_mmap)
        if mmap and self.device.type != "cpu":
            raise ValueError(f"A memory-mapped index can only be searched on CPU, not {self.device}; set "
                             "ColBERTConfig(load_index_with_mmap=False) or gpus=0")
        loaded = LoadedIndex.open(self.index, mmap=mmap)
        self.index_config = loaded.config
        self.dim = loaded.dim  # fixed for the life of the index: updates keep it
        name = str(checkpoint) if checkpoint is not None else self.index_config.checkpoint
        self.checkpoint_config = self._checkpoint_config(name, given=checkpoint is not None)
        self.config = ColBERTConfig.from_existing(self.checkpoint_config, self.index_config, initial,
                                                  ColBERTConfig(checkpoint=name, load_index_with_mmap=mmap))
        if self.config.similarity != "cosine":
            raise ValueError(f"similarity={self.config.similarity!r} is not supported by search; use 'cosine'")
        self._collection = collection
        self._documents: tuple[int, Union[Documents, bool]] = (-1, False)  # (generation, documents) read last
        self.checkpoint = self._load_checkpoint(name)
        self.index_handle = IndexHandle(loaded, device=self.device, mmap=mmap)
        if verbose > 1:
            logger.info("Searcher on %s (%s passages, nbits=%d) with %s on %s", self.index,
                        f"{loaded.num_passages:,}", loaded.nbits, name, self.device)

    @property
    def loaded(self) -> LoadedIndex:
        """The index as published now (searches each read their own snapshot of `index_handle`)."""
        return self.index_handle.snapshot().loaded

    @property
    def ranker(self) -> LoadedIndex:
        """The index as published now, on the search device (what search reads; `loaded` itself on the CPU)."""
        return self.index_handle.snapshot().view

    def _checkpoint_config(self, name: Optional[str], given: bool) -> Optional[ColBERTConfig]:
        if not name:
            raise ValueError(f"The index at {self.index} names no checkpoint; pass Searcher(index, checkpoint=...)")
        if not given and _looks_like_a_path(name) and not os.path.exists(os.path.expanduser(name)):
            raise FileNotFoundError(f"The index at {self.index} was built with the checkpoint {name}, which does not "
                                    "exist here; pass Searcher(index, checkpoint=<its folder or hub name>)")
        if given and self.index_config.checkpoint and name != self.index_config.checkpoint:
            logger.info("Encoding queries with %s; the index at %s was built with %s", name, self.index,
                        self.index_config.checkpoint)
        stored, encoding = read_layout(name)
        if (stored is not None and "dim" in stored.assigned and stored.dim != self.dim
                and self.dim not in encoding.matryoshka_dims):  # a Matryoshka head serves its narrower widths too
            raise CheckpointError(
                f"The checkpoint {name} makes {stored.dim}-dim embeddings but the index at {self.index} holds "
                f"{self.dim}-dim ones; search it with the checkpoint it was built with "
                f"({self.index_config.checkpoint})."
            )
        return stored

    def _load_checkpoint(self, name: str) -> Checkpoint:
        from colbert.modeling.checkpoint import Checkpoint

        if os.path.isfile(os.path.join(os.path.expanduser(name), "colbert_onnx.json")):  # an ONNX export
            from colbert.export.onnx import OnnxCheckpoint

            return OnnxCheckpoint(name, colbert_config=self.config, verbose=self.verbose)
        try:
            return Checkpoint(name, colbert_config=self.config, verbose=self.verbose, device=self.device)
        except CheckpointError as e:
            raise CheckpointError(f"Cannot search {self.index} (dim {self.dim}) with the checkpoint {name}: "
                                  f"{e}") from e

    def configure(self, **kwargs: object) -> None:
        """Set config fields, e.g. `searcher.configure(ncells=4, ndocs=4096)`; they apply from the next search.

        Each value is checked first (TypeError / ValueError naming the field); fields fixed by the index (dim,
        nbits, similarity) cannot change."""
        fixed = {"dim", "nbits", "similarity", "load_index_with_mmap"} & kwargs.keys()
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))} cannot change on an open Searcher; open a new one")
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

    @property
    def documents(self) -> Optional[Documents]:
        """The texts and metadata stored with the index (documents.jsonl), read on first use; None when it stores
        none (build it with `Indexer.index(..., store_documents=True)` or `metadata=`)."""
        snap = self.index_handle.snapshot()
        generation, documents = self._documents
        if generation != snap.generation:
            documents = snap.documents  # what the updater that published this state holds
            if documents is None:
                stored = read_documents(snap.loaded.path, snap.loaded.doc_ids, snap.loaded.num_passages)
                documents = False if stored is None else stored
            self._documents = (snap.generation, documents)
        return documents or None

    def document(self, doc_id: DocId) -> dict:
        """{"id", "text", "metadata"} of a document stored with the index.

        Raises:
            ValueError: the index stores no documents. KeyError: no such id.
        """
        if self.documents is None:
            raise ValueError(f"The index at {self.index} stores no document texts; build it with "
                             "Indexer.index(..., store_documents=True) or metadata=...")
        return self.documents.get(doc_id)

    def metadata_filter(self, predicate: Callable[[dict], bool]) -> plaid.FilterFn:
        """A `filter_fn` keeping documents whose stored metadata satisfy `predicate` (a function of the metadata
        dict), applied to the candidates before scoring: `search(q, k, filter_fn=searcher.metadata_filter(f))`.

        The predicate runs once on every document, now. With PLAID, a filter that keeps few documents may leave
        fewer than k candidates: for those, `search(q, k, pids=searcher.ids_where(f))` scores every match exactly.
        """
        return metadata_filter(self.documents, predicate, self.index)

    def ids_where(self, predicate: Callable[[dict], bool]) -> list[DocId]:
        """The ids of the documents whose stored metadata satisfy `predicate`, for `search(..., pids=...)`."""
        if self.documents is None:
            metadata_filter(None, predicate, self.index)  # raises, saying how to store metadata
        keep = self.documents.mask(predicate)
        return [self.documents.ids[p] for p in keep.nonzero().squeeze(1).tolist()]

    def encode(self, text: Union[str, Sequence[str]], full_length_search: bool = False,
               precision: str = "fp32") -> Tensor:
        """Query embeddings: (n, query_maxlen, d), or longer with full_length_search (one query per call).

        Queries longer than query_maxlen - 3 wordpieces are truncated, as in the reference, unless
        full_length_search; an empty query encodes as `[CLS] [Q] [SEP]` + `[MASK]`s. `precision="bf16"` encodes
        faster on CPUs with native bf16 (Checkpoint.query).
        """
        queries = [text] if isinstance(text, str) else text
        self.checkpoint.query_tokenizer.query_maxlen = self.config.query_maxlen  # configure() may have changed it
        bsize = SEARCH_ALL_BATCH if len(queries) > SEARCH_ALL_BATCH else None
        return self.checkpoint.queryFromText(queries, bsize=bsize, full_length_search=full_length_search,
                                             precision=precision)

    def search(self, text: str, k: int = 10, filter_fn: Optional[plaid.FilterFn] = None,
               full_length_search: bool = False, pids: Optional[Iterable[DocId]] = None, *,
               exact: bool = False, diversity: float = 0.0) -> SearchResult:
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
            diversity: 0 (plain search) to 1: pick the k results by maximal marginal relevance among the best
                `colbert.search.diversity.candidates_for(k)` (100 at k <= 50), trading relevance for results
                unlike those ranked above them (documents compared by MaxSim between the vectors that matched the
                query). Scores stay MaxSim scores, so they need not decrease down the list.
        """
        if not isinstance(text, str):
            raise TypeError(f"search takes one query as a str, got {type(text).__name__}; use search_all for many")
        k = check_k(k)
        _check_filter(filter_fn)
        diversity = check_diversity(diversity)
        Q = self.encode(text, full_length_search=full_length_search)
        return self.dense_search(Q, k, filter_fn=filter_fn, pids=pids, exact=exact, diversity=diversity)

    def dense_search(self, Q: Tensor, k: int = 10, filter_fn: Optional[plaid.FilterFn] = None,
                     pids: Optional[Iterable[DocId]] = None, *, exact: bool = False,
                     diversity: float = 0.0) -> SearchResult:
        """`search` for a query already encoded. Shapes: Q (1, Lq, d) or (Lq, d)."""
        k = check_k(k)
        _check_filter(filter_fn)
        diversity = check_diversity(diversity)
        Q = self._check_query(Q)
        snap = self.index_handle.snapshot()  # one state for the whole query
        allowed = None if pids is None else self._pids_of(snap, pids)
        top_pids, top_scores = self._search_one(snap, Q, k, filter_fn, allowed, exact, diversity)
        return _result(snap, top_pids, top_scores)

    def search_all(self, queries: TextQueries, k: int = 10, filter_fn: Optional[plaid.FilterFn] = None,
                   full_length_search: bool = False,
                   qid_to_pids: Optional[Mapping[Hashable, Iterable[DocId]]] = None,
                   *, exact: bool = False, diversity: float = 0.0) -> Ranking:
        """Search many queries ({qid: text}, a list, a TSV path or Queries) in batches of SEARCH_ALL_BATCH, keeping
        only the top k of each: memory grows with the number of queries times k, not with the index. The other
        arguments are those of `search`.

        Args:
            qid_to_pids: per query, the document ids to restrict it to (as `search(pids=...)`); every qid needs one.
            full_length_search: each query is encoded at its own length (one at a time).
            diversity: as `search` (MMR per query).

        Returns:
            A Ranking {qid: [(id, rank, score), ...]}, every query answered by the same state of the index.
        """
        k = check_k(k)
        _check_filter(filter_fn)
        diversity = check_diversity(diversity)
        if isinstance(queries, str) and not os.path.exists(queries):
            raise FileNotFoundError(f"search_all got the str {queries[:80]!r}, which is not a queries file; pass a "
                                    "list or dict of queries, or use search(text) for one query")
        queries = Queries.cast(queries)
        qids = list(queries.keys())
        if qid_to_pids is not None:
            missing = [qid for qid in qids if qid not in qid_to_pids]
            if missing:
                raise ValueError(f"qid_to_pids has no entry for {len(missing):,} of the queries, e.g. {missing[:5]}")
        data: dict[Hashable, list[tuple]] = {}
        snap = self.index_handle.snapshot()
        starts = range(0, len(qids), SEARCH_ALL_BATCH)
        for start in progress(starts, desc="Searching", enabled=None if self.verbose > 0 else False, unit="batch"):
            batch = qids[start:start + SEARCH_ALL_BATCH]
            encoded = self._encode_batch([queries[qid] for qid in batch], full_length_search)
            if exact and filter_fn is None and qid_to_pids is None and not full_length_search:
                Qs = self._stack(encoded)
                want = candidates_for(k) if diversity else k
                tops = plaid.exhaustive_search(snap.view, Qs, want)  # one pass for the batch
                if diversity:
                    tops = [diversify(snap.view, Q, *top, k, diversity) for Q, top in zip(Qs, tops)]
            else:
                tops = [self._search_one(snap, Q.to(self.device, torch.float32), k, filter_fn,
                                         None if qid_to_pids is None else self._pids_of(snap, qid_to_pids[qid]),
                                         exact, diversity)
                        for qid, Q in zip(batch, encoded)]
            for qid, (top_pids, top_scores) in zip(batch, tops):
                data[qid] = list(zip(*_result(snap, top_pids, top_scores)))
        provenance = {"source": "Searcher.search_all", "index": self.index, "k": k, "exact": exact,
                      **({"diversity": diversity} if diversity else {}),
                      "queries": queries.provenance()}
        return Ranking(data=data, provenance=provenance, run_dir=Run().config.path_)  # where save() puts names

    def explain(self, query: str, doc_id: DocId, text: Optional[str] = None,
                full_length_search: bool = False) -> Explanation:
        """Why document `doc_id` scores what it does for `query`: the MaxSim terms over its stored (decompressed)
        vectors, token by token (colbert.explain). The score equals what `search(query, exact=True)` gives it.

        Args:
            query: the query text.
            doc_id: the document's id in the index.
            text: its text, to name and shade its tokens; default the text stored with the index
                (`self.document(doc_id)`), else from the collection (`self.collection`) when there is one. Without text, or when the text does not give the stored number of vectors (a pooled
                index, a different text), matches name vectors by position and the page has no heatmap.

        Raises:
            KeyError: doc_id is not in the index.
        """
        from colbert.modeling.explain import build_explanation, document_tokens, kept_positions, query_tokens

        if not isinstance(query, str):
            raise TypeError(f"explain takes one query as a str, got {type(query).__name__}")
        snap = self.index_handle.snapshot()  # one state for the vectors and the text
        pid = snap.loaded.pid_of(doc_id)
        Q = self.encode(query, full_length_search=full_length_search)[0]  # (Lq, d)
        codes, packed, _ = snap.view.gather(torch.tensor([pid], device=self.device))
        D = snap.view.codec.decompress(codes, packed)  # (doclen, d)
        text = self._text_of(doc_id) if text is None else text
        names, spans, positions = [], [], None
        if text:
            ids, names, spans = document_tokens(self.checkpoint, text)
            positions = kept_positions(self.checkpoint, ids)
            if len(positions) != D.size(0):
                logger.info("Document %r has %d stored vectors but its text gives %d tokens (a pooled index, or "
                            "another text): explaining vectors, not tokens", doc_id, D.size(0), len(positions))
                positions = None
        return build_explanation(query, text or "", query_tokens(self.checkpoint, query, full_length_search), names,
                                 spans, positions, Q.float().cpu(), D.float().cpu())

    def _text_of(self, doc_id: DocId) -> Optional[str]:
        """The document's text: stored with the index, else from the collection when there is one holding that id."""
        if self.documents is not None:
            return self.documents.get(doc_id)["text"]
        try:
            collection = self.collection
        except FileNotFoundError:
            return None
        if collection.ids is None:
            return collection[doc_id] if isinstance(doc_id, int) and 0 <= doc_id < len(collection) else None
        try:
            return collection[collection.ids.index(doc_id)]
        except ValueError:
            return None

    def pids_of(self, ids: Iterable[DocId]) -> Tensor:
        """Positions in the index of document ids (sorted, unique), for `filter_fn`s over string ids.

        Raises:
            ValueError: some ids are not in the index (the message lists a few).
        """
        return self._pids_of(self.index_handle.snapshot(), ids)

    def _pids_of(self, snap: Snapshot, ids: Iterable[DocId]) -> Tensor:
        loaded = snap.loaded
        if isinstance(ids, (str, bytes)):
            raise TypeError("pids must be a collection of document ids, not a single str; wrap it in a list")
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        fast = _as_int_tensor(ids) if loaded.doc_ids is None else None
        if fast is not None:  # ids are pids: checked in one go, allow-lists may be long
            outside = (fast < 0) | (fast >= loaded.num_passages)  # (n,)
            outside[~outside] = loaded.doclens[fast[~outside]] == 0  # removed passages are not documents
            bad = fast[outside].tolist()
            pids = fast
        else:
            pids, bad = [], []
            for doc_id in ids:
                try:
                    pids.append(loaded.pid_of(doc_id))
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
        if Q.dim() != 2 or Q.size(1) != self.dim or Q.size(0) == 0:
            raise ValueError(f"Q must hold one query's embeddings, shaped (1, Lq, {self.dim}) or "
                             f"(Lq, {self.dim}); got {tuple(Q.shape)}. Use search_all for many queries.")
        if Q.is_complex() or not (Q.is_floating_point()):
            raise TypeError(f"Q must hold floating-point embeddings, got {Q.dtype}")
        _check_finite(Q, "the query embeddings")
        return Q.to(self.device, torch.float32)

    def _encode_batch(self, texts: list[str], full_length_search: bool) -> list[Tensor]:
        """Each query's embeddings (Lq, d); with full_length_search one at a time, each at its own length."""
        if full_length_search:
            encoded = [self.encode(text, full_length_search=True)[0] for text in texts]
        else:
            encoded = list(self.encode(texts))
        for text, Q in zip(texts, encoded):
            _check_finite(Q, f"the embeddings of the query {text[:80]!r}")
        return encoded

    def _stack(self, encoded: list[Tensor]) -> Tensor:
        return torch.stack(encoded).to(self.device, torch.float32)  # (B, Lq, d)

    def _search_one(self, snap: Snapshot, Q: Tensor, k: int, filter_fn: Optional[plaid.FilterFn],
                    allowed: Optional[Tensor], exact: bool, diversity: float = 0.0) -> tuple[Tensor, Tensor]:
        """One query on the pids of `snap`. Shapes: Q (Lq, d) float32 on the device -> ((<= k,), (<= k,))."""
        if not diversity:
            return self._top(snap, Q, k, filter_fn, allowed, exact)
        want = candidates_for(k)
        with torch.inference_mode():
            if allowed is None and not exact:  # PLAID at k's settings; its last stage returns the evidence
                params = scoring_at_least(search_params(k, self.config), want)
                survivors = plaid.survivors(snap.view, Q, params, self.config.query_maxlen, filter_fn)
                top_pids, top_scores, evidence = plaid.rank_with_evidence(snap.view, Q, survivors, want)
                return diversify(snap.view, Q, top_pids, top_scores, k, diversity, evidence)
            top_pids, top_scores = self._top(snap, Q, want, filter_fn, allowed, exact)
            return diversify(snap.view, Q, top_pids, top_scores, k, diversity)

    def _top(self, snap: Snapshot, Q: Tensor, k: int, filter_fn: Optional[plaid.FilterFn],
             allowed: Optional[Tensor], exact: bool) -> tuple[Tensor, Tensor]:
        """The k best pids of `snap` by MaxSim. Shapes: Q (Lq, d) float32 on the device -> ((<= k,), (<= k,))."""
        num_passages = snap.loaded.num_passages
        with torch.inference_mode():
            if allowed is not None and filter_fn is not None:
                allowed = plaid.apply_filter(filter_fn, allowed.int(), num_passages)
            elif filter_fn is not None and exact:
                everything = torch.arange(num_passages, dtype=torch.int32, device=self.device)
                allowed = plaid.apply_filter(filter_fn, everything, num_passages)
            if allowed is not None or exact:
                if allowed is not None and allowed.numel() == 0:
                    return allowed, Q.new_empty(0)
                return plaid.exhaustive_search(snap.view, Q[None], k, allowed)[0]
            params = search_params(k, self.config)
            return plaid.plaid_search(snap.view, Q, params, k, probe_tokens=self.config.query_maxlen,
                                      filter_fn=filter_fn)


def _result(snap: Snapshot, pids: Tensor, scores: Tensor) -> SearchResult:
    """(ids, ranks from 1, scores) with the user's ids of the snapshot the pids came from."""
    pid_list = pids.tolist()
    doc_ids = snap.loaded.doc_ids
    ids = pid_list if doc_ids is None else [doc_ids[p] for p in pid_list]
    return ids, list(range(1, len(ids) + 1)), scores.tolist()
