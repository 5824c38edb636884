"""Diverse results: maximal marginal relevance (MMR) over a query's best candidates.

`Searcher.search(query, k, diversity=λ)` first finds the best `candidates_for(k)` documents as usual, then picks k of
them greedily: each time the one maximising

    (1 - λ) * relevance(d)  -  λ * max over the documents s already picked of similarity(d, s)

where relevance is the document's MaxSim score divided by the number of query vectors (a mean cosine) and the
similarity of two documents is MaxSim between them, symmetrised and averaged (also a mean cosine, in [-1, 1]).
λ = 0 is plain search; λ = 1 ignores relevance after the first pick.

Document-document MaxSim runs on the stored (decompressed) vectors, restricted to each document's *evidence*: the
vector that each query vector matched in it (the MaxSim terms, at most Lq vectors per document). Two documents are
similar when they answer the query with similar tokens; near-duplicates have identical evidence and similarity 1.
Restricting to the evidence makes comparing a document with a pick cost Lq x Lq dot products instead of Ld x Ld.

What it costs: PLAID finds the candidates with the settings of the requested k, scoring `candidates_for(k)`
documents exactly (`params.scoring_at_least`), and its last stage returns each one's evidence from the same pass
(`plaid.rank_with_evidence`: the kernel copies the matched vectors from the rows it has just decoded), so no
candidate is decompressed or scored twice. The picks are one kernel call (`colbert.kernels.mmr`, native on CPU),
lazy: a candidate is compared with a new pick only while its gain could still be the highest.
"""

from __future__ import annotations

import logging
from typing import Optional

from torch import Tensor

from colbert import kernels
from colbert.index.loaded import LoadedIndex
from colbert.search import plaid
from colbert.search.plaid import Evidence

logger = logging.getLogger(__name__)

MMR_CANDIDATES = 100  # documents MMR chooses from at k <= 50; 2k beyond


def candidates_for(k: int) -> int:
    """How many of the best documents MMR picks its k from.

    >>> candidates_for(10), candidates_for(80)
    (100, 160)
    """
    return max(MMR_CANDIDATES, 2 * k)


def check_diversity(diversity: object) -> float:
    """`diversity` as a float in [0, 1], or ValueError naming the value."""
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0 <= diversity <= 1:
        raise ValueError(f"diversity must be a number from 0 (plain search) to 1 (most diverse), got {diversity!r}")
    return float(diversity)


def diversify(index: LoadedIndex, Q: Tensor, pids: Tensor, scores: Tensor, k: int, diversity: float,
              evidence: Optional[Evidence] = None) -> tuple[Tensor, Tensor]:
    """Re-rank a query's best candidates by MMR (see the module docstring); scores stay the MaxSim scores.

    Args:
        index: the index holding the candidates, on the search device.
        Q: the query's embeddings, float32.
        pids, scores: its candidates, best first.
        evidence: theirs, when the search that ranked them returned it (`plaid.rank_with_evidence`); None: found
            here, with one pass over the candidates (`plaid.evidence`).

    Shapes: Q (Lq, d); pids (n,) int64; scores (n,) -> ((min(k, n),), (min(k, n),)).
    """
    if pids.numel() == 0 or diversity == 0:
        return pids[:k], scores[:k]
    if evidence is None:
        evidence = plaid.evidence(index, Q, pids)
    order = kernels.mmr(scores.float() / Q.size(0), evidence.vectors, evidence.index, k, diversity)
    return pids[order], scores[order]
