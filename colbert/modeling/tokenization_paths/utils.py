"""The reference's `colbert.modeling.tokenization.utils`: training batches of (queries, passages, scores)."""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor

__all__ = ["tensorize_triples"]


def tensorize_triples(query_tokenizer: Any, doc_tokenizer: Any, queries: Sequence[str], passages: Sequence[str],
                      scores: Sequence[float], bsize: int, nway: int) -> list[tuple]:
    """[(query (ids, mask), passages (ids, mask), scores), ...] in batches of `bsize` queries with `nway` passages
    each (passages padded to the longest of all, as the reference)."""
    q_ids, q_mask = query_tokenizer.tensorize(queries)  # (n, Lq)
    d_ids, d_mask = doc_tokenizer.tensorize(passages)  # (n * nway, Ld)
    queries_ = _split_into_batches(q_ids, q_mask, bsize)
    docs = _split_into_batches(d_ids, d_mask, bsize * nway)
    scored = [list(scores[i:i + bsize * nway]) for i in range(0, len(scores), bsize * nway)] if len(scores) else \
        [[] for _ in docs]
    return list(zip(queries_, docs, scored))


def _split_into_batches(ids: Tensor, mask: Tensor, bsize: int) -> list[tuple[Tensor, Tensor]]:
    return [(ids[i:i + bsize], mask[i:i + bsize]) for i in range(0, ids.size(0), bsize)]
