"""Hard-negative mining: retrieve the top k passages of each training query, drop its positives, write triples.

    from colbert.training.mining import mine_hard_negatives
    mine_hard_negatives("queries.tsv", "qrels.tsv", "collection.tsv", "triples.jsonl",
                        checkpoint="path/to/colbert", k=50, negatives=1, passes=4)

Retrieval is pluggable: a *retriever* is any callable `(query texts, k) -> top-k collection positions per query,
best first`. Three come with this module: `maxsim_retriever` (exhaustive MaxSim with a ColBERT checkpoint: every
passage encoded once and scored against every query; fine for tens of thousands of passages), `bm25_retriever`
(used when no checkpoint is given) and `searcher_retriever`, which wraps an index `Searcher` for large collections.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import defaultdict
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from colbert.data import Collection, Queries
from colbert.training.bm25 import BM25
from colbert.utils.io import atomic_write
from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

Retriever = Callable[[Sequence[str], int], list[list[int]]]
QUERY_BLOCK = 32  # queries scored together: (sum of doclens) x (32 x query_maxlen) fp32 scores at once


def read_qrels(qrels: Any) -> dict[str, set[str]]:
    """Relevant passages per query, ids as text: {qid: {pid, ...}} for rel > 0.

    Reads `qid<TAB>pid<TAB>rel` lines (as ../shared/data), TREC `qid 0 pid rel` lines, or takes a dict
    {qid: iterable of pids} or {qid: {pid: rel}}.
    """
    out: dict[str, set[str]] = defaultdict(set)
    if isinstance(qrels, dict):
        for qid, pids in qrels.items():
            rels = pids if isinstance(pids, dict) else {pid: 1 for pid in pids}
            out[str(qid)].update(str(pid) for pid, rel in rels.items() if rel > 0)
        return dict(out)
    with open(qrels, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (3, 4) or not fields[-1].lstrip("-").isdigit():
                raise ValueError(f"{qrels}:{lineno}: expected 'qid pid rel' or 'qid 0 pid rel', got {line[:80]!r}")
            if int(fields[-1]) > 0:
                out[fields[0]].add(fields[-2])
    return dict(out)


def bm25_retriever(collection: Collection) -> Retriever:
    """Retrieve with BM25 (colbert.training.bm25) over the collection's texts."""
    bm25 = BM25(list(collection))
    return lambda texts, k: [bm25.search(text, k) for text in texts]


def maxsim_retriever(checkpoint: Any, collection: Collection, bsize: Optional[int] = None) -> Retriever:
    """Exhaustive MaxSim: every passage is encoded once (here), each query is scored against all of them.

    Args:
        checkpoint: a `Checkpoint`, or a checkpoint folder or hub name to load one from.
        collection: the passages.
        bsize: passages encoded per batch (default: the checkpoint's index_bsize).
    """
    from colbert.modeling.checkpoint import Checkpoint

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(str(checkpoint), verbose=1)
    D, doclens = ckpt.docFromText(list(collection), bsize=bsize, keep_dims="flatten", to_cpu=True,
                                  showprogress=True)[:2]
    D = D.float()  # (N, d), N = sum(doclens)
    owner = torch.repeat_interleave(torch.arange(len(doclens)), torch.tensor(doclens))  # (N,) passage of each row

    def retrieve(texts: Sequence[str], k: int) -> list[list[int]]:
        out = []
        for start in progress(range(0, len(texts), QUERY_BLOCK), desc="Exhaustive MaxSim"):
            Q = ckpt.queryFromText(list(texts[start:start + QUERY_BLOCK]), to_cpu=True).float()  # (nq, Lq, d)
            scores = maxsim_all(Q, D, owner, len(doclens))  # (nq, ndocs)
            top = scores.topk(min(k, scores.size(1)), dim=1).indices  # (nq, k)
            out.extend(top.tolist())
        return out

    return retrieve


def maxsim_all(Q: Tensor, D_packed: Tensor, owner: Tensor, ndocs: int) -> Tensor:
    """MaxSim of every query against every packed passage (the same sum of maxima as `colbert_score_packed`).

    Shapes: Q (nq, Lq, d), D_packed (N, d), owner (N,) passage index of each row -> (nq, ndocs).
    """
    nq, Lq, _ = Q.shape
    token_scores = D_packed @ Q.reshape(nq * Lq, -1).T  # (N, nq * Lq)
    best = token_scores.new_full((ndocs, nq * Lq), float("-inf"))
    best.scatter_reduce_(0, owner.unsqueeze(1).expand_as(token_scores), token_scores, "amax")  # (ndocs, nq * Lq)
    return best.view(ndocs, nq, Lq).sum(-1).T  # (nq, ndocs)


def searcher_retriever(searcher: Any) -> Retriever:
    """Wrap an index Searcher whose `search(text, k)` returns (pids, ranks, scores), pids being collection
    positions (the reference's contract)."""
    return lambda texts, k: [list(searcher.search(text, k=k)[0]) for text in texts]


def mine_hard_negatives(queries: Any, qrels: Any, collection: Any, output: str | os.PathLike, *,
                        checkpoint: Any = None, retriever: Optional[Retriever] = None, k: int = 50,
                        negatives: int = 1, passes: int = 1, skip: int = 0, seed: int = 12345) -> str:
    """Write training triples `[qid, pid+, pid-, ...]` whose negatives are retrieved, not random.

    For each query with a relevant passage in `qrels`, the top `k` passages are retrieved and its relevant
    passages removed; after dropping the first `skip` of what remains (often unjudged positives), `negatives`
    are drawn at random from the rest. One line is written per (query, positive) pair and pass; each pass visits
    the pairs in a new random order with newly drawn negatives, so `passes` works as the number of epochs (a
    training run reads its triples once). Train with `nway = negatives + 1`.

    Args:
        queries: TSV path, dict or `Queries`.
        qrels: path or dict, see `read_qrels`.
        collection: TSV path, list or `Collection`; ids in the output are the collection's own.
        output: the JSONL file to write (atomically).
        checkpoint: retrieve with exhaustive MaxSim over this ColBERT checkpoint; without it, BM25.
        retriever: any `(texts, k) -> positions` callable; overrides `checkpoint`.
        k: candidates retrieved per query.
        negatives: negatives per line.
        passes: times every (query, positive) pair is written.
        skip: top-ranked non-relevant candidates never used as negatives.
        seed: seeds the order and the draws.

    Returns:
        The output path.

    Raises:
        ValueError: a qrels passage is not in the collection, or k is too small for `skip + negatives`.
    """
    if k < skip + negatives:
        raise ValueError(f"k={k} leaves no room for skip={skip} + negatives={negatives}; raise k")
    queries, collection = Queries.cast(queries), Collection.cast(collection)
    positives = _positives(read_qrels(qrels), queries, collection)
    qids = list(positives)
    if retriever is None:
        retriever = maxsim_retriever(checkpoint, collection) if checkpoint is not None else bm25_retriever(collection)
    ranked = retriever([queries[qid] for qid in qids], k)
    pools = {qid: [p for p in ranks if p not in positives[qid]][skip:] for qid, ranks in zip(qids, ranked)}
    short = [qid for qid in qids if len(pools[qid]) < negatives]
    if short:
        logger.warning("%d queries have fewer than %d negatives in their top %d and are left out (first: %r)",
                       len(short), negatives, k, short[0])
    pairs = [(qid, pos) for qid in qids if len(pools[qid]) >= negatives for pos in sorted(positives[qid])]
    rng = random.Random(seed)
    with atomic_write(output) as f:
        for _ in range(passes):
            rng.shuffle(pairs)
            for qid, pos in pairs:
                line = [qid, collection.id_of(pos), *(collection.id_of(p) for p in rng.sample(pools[qid], negatives))]
                f.write(json.dumps(line) + "\n")
    logger.info("Wrote %d triples (%d queries, %d passes) to %s", len(pairs) * passes, len({q for q, _ in pairs}),
                passes, output)
    return str(output)


def _positives(qrels: dict[str, set[str]], queries: Queries, collection: Collection) -> dict[Any, set[int]]:
    """{qid as in queries: positions of its relevant passages}, for the queries that have any."""
    position = {str(collection.id_of(pos)): pos for pos in range(len(collection))}
    asked = {str(qid) for qid in queries.keys()}
    missing = sorted({pid for qid, pids in qrels.items() if qid in asked for pid in pids if pid not in position})
    if missing:
        raise ValueError(f"qrels name {len(missing)} passages that are not in the collection (first: {missing[0]!r}); "
                         "use the qrels of this collection")
    out = {qid: {position[p] for p in qrels[str(qid)]} for qid in queries.keys() if qrels.get(str(qid))}
    if len(out) < len(queries):
        logger.info("%d of %d queries have no relevant passage in the qrels and are skipped",
                    len(queries) - len(out), len(queries))
    return out
