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
(`plaid.rank_with_evidence`), so only the matched vectors are decompressed again. The picks are lazy (`mmr`).
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor

from colbert.search import plaid

logger = logging.getLogger(__name__)

MMR_CANDIDATES = 100  # documents MMR chooses from at k <= 50; 2k beyond
MMR_FIRST_COMPARED = 16  # documents compared at once with new picks before any gain is known exactly


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


def pair_similarity(A: Tensor, B: Tensor) -> Tensor:
    """Symmetrised mean MaxSim between the evidence of documents A[i] and B[i].

    Shapes: A (p, Lq, d); B (p, Lq, d) -> (p,).

    >>> pair_similarity(torch.tensor([[[1., 0.], [0., 1.]]]), torch.tensor([[[1., 0.], [1., 0.]]]))
    tensor([0.7500])
    """
    S = A @ B.transpose(1, 2)  # (p, Lq, Lq): [pair, A's vector, B's vector]
    return 0.5 * (S.amax(dim=2).mean(dim=1) + S.amax(dim=1).mean(dim=1))  # (p,)


def mmr(relevance: Tensor, E: Tensor, k: int, diversity: float) -> Tensor:
    """Greedy MMR: positions of the k documents picked, in order.

    Lazily: a document's gain only falls as documents are picked, so the gain it had when last compared is an upper
    bound. Each pick compares with the picks made since only the documents whose bound could still win, until the
    best bound is an exact gain; that document is the greedy pick (the first of equal gains, as argmax). The first
    comparison is with every document; later picks usually compare a few.

    Shapes: relevance (n,) mean cosines; E (n, Lq, d) evidence -> (min(k, n),) int64.

    Example (documents 0 and 1 are duplicates, 2 is less relevant but different):
        >>> E = torch.tensor([[[1., 0.]], [[1., 0.]], [[0., 1.]]])
        >>> mmr(torch.tensor([0.9, 0.9, 0.5]), E, 2, 0.0).tolist(), mmr(torch.tensor([0.9, 0.9, 0.5]), E, 2, 0.5).tolist()
        ([0, 1], [0, 2])
    """
    n = relevance.numel()
    k = min(k, n)
    if k == 0:
        return torch.zeros(0, dtype=torch.long, device=relevance.device)
    picked = [int(relevance.argmax())]
    taken = torch.zeros(n, dtype=torch.bool, device=relevance.device)
    taken[picked[0]] = True
    closest = relevance.new_full((n,), float("-inf"))  # (n,) max similarity to the picks compared with so far
    seen = torch.zeros(n, dtype=torch.long, device=relevance.device)  # (n,) how many picks `closest` accounts for
    while len(picked) < k:
        t = len(picked)
        while True:
            gain = (1 - diversity) * relevance - diversity * closest.clamp(min=-1)  # (n,) exact where seen == t
            gain[taken] = float("-inf")
            best = int(gain.argmax())
            if int(seen[best]) == t:
                break
            fresh = (seen == t) & ~taken
            if bool(fresh.any()):  # only documents whose bound reaches the best exact gain can still win
                stale = (~fresh & ~taken & (gain >= gain[fresh].max())).nonzero().squeeze(1)
            else:  # no exact gain yet: compare the most promising first
                stale = gain.topk(min(MMR_FIRST_COMPARED, n - t)).indices
            _compare(E, stale, torch.tensor(picked, device=E.device), closest, seen)
        picked.append(best)
        taken[best] = True
    return torch.tensor(picked, dtype=torch.long, device=relevance.device)


def _compare(E: Tensor, docs: Tensor, picked: Tensor, closest: Tensor, seen: Tensor) -> None:
    """Update `closest` and `seen` of `docs` with their similarity to the picks they were not compared with yet.

    Shapes: E (n, Lq, d); docs (r,); picked (t,); closest, seen (n,), updated in place.
    """
    t = picked.numel()
    counts = t - seen[docs]  # (r,) picks each document has not met
    doc = docs.repeat_interleave(counts)  # (p,) one (document, pick) pair per comparison
    first = (counts.cumsum(0) - counts).repeat_interleave(counts)  # (p,) where each document's pairs start
    pick = picked[seen[doc] + torch.arange(doc.numel(), device=doc.device) - first]  # (p,)
    closest.scatter_reduce_(0, doc, pair_similarity(E[doc], E[pick]), "amax")
    seen[docs] = t


def diversify(index, Q: Tensor, pids: Tensor, scores: Tensor, k: int, diversity: float,
              E: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Re-rank a query's best candidates by MMR (see the module docstring); scores stay the MaxSim scores.

    Args:
        index: the SearchIndex (colbert.search.plaid) holding the candidates.
        Q: the query's embeddings, float32.
        pids, scores: its candidates, best first.
        E: their evidence when the search that ranked them returned it (`plaid.rank_with_evidence`); None: found
            here with one pass over the candidates (`plaid.evidence`).

    Shapes: Q (Lq, d); pids (n,) int64; scores (n,); E (n, Lq, d) -> ((min(k, n),), (min(k, n),)).
    """
    if pids.numel() == 0 or diversity == 0:
        return pids[:k], scores[:k]
    if E is None:
        E = plaid.evidence(index, Q, pids)  # (n, Lq, d)
    order = mmr(scores.float() / Q.size(0), E.float(), k, diversity)
    return pids[order], scores[order]
