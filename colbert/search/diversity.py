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
Restricting to the evidence makes one pick cost (candidates x Lq) x Lq dot products instead of (candidates x Ld) x
Ld over whole documents, which is what keeps MMR within the latency of a second search.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from colbert.index.loaded import LoadedIndex

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


def evidence(Q: Tensor, D: Tensor, lengths: Tensor) -> Tensor:
    """For each document, the vector each query vector matches best (its MaxSim term).

    Shapes: Q (Lq, d); D (sum(lengths), d) documents end to end; lengths (n,) -> (n, Lq, d).
    """
    n, longest = lengths.numel(), int(lengths.max())
    starts = torch.cumsum(lengths, 0) - lengths  # (n,) first row of each document in D
    valid = torch.arange(longest, device=D.device) < lengths[:, None]  # (n, L)
    scores = D @ Q.T  # (sum(lengths), Lq)
    S = scores.new_full((n, longest, Q.size(0)), float("-inf"))  # (n, L, Lq): the scores are padded, not the vectors
    S[valid] = scores
    best = S.argmax(dim=1)  # (n, Lq) row of each query vector's match within its document
    return D[starts[:, None] + best]  # (n, Lq, d)


def similarity_to(E: Tensor, s: int) -> Tensor:
    """Symmetrised mean MaxSim between every document's evidence and document s's.

    Shapes: E (n, Lq, d) -> (n,).
    """
    S = E @ E[s].T  # (n, Lq, Lq): [document, its vector, s's vector]
    return 0.5 * (S.amax(dim=2).mean(dim=1) + S.amax(dim=1).mean(dim=1))  # (n,)


def mmr(relevance: Tensor, E: Tensor, k: int, diversity: float) -> Tensor:
    """Greedy MMR: positions of the k documents picked, in order.

    Shapes: relevance (n,) mean cosines; E (n, Lq, d) evidence -> (min(k, n),) int64.

    Example (documents 0 and 1 are duplicates, 2 is less relevant but different):
        >>> E = torch.tensor([[[1., 0.]], [[1., 0.]], [[0., 1.]]])
        >>> mmr(torch.tensor([0.9, 0.9, 0.5]), E, 2, 0.0).tolist(), mmr(torch.tensor([0.9, 0.9, 0.5]), E, 2, 0.5).tolist()
        ([0, 1], [0, 2])
    """
    n = relevance.numel()
    picked: list[int] = []
    closest = relevance.new_full((n,), float("-inf"))  # (n,) max similarity to the picked documents
    available = torch.ones(n, dtype=torch.bool, device=relevance.device)
    for _ in range(min(k, n)):
        gain = (1 - diversity) * relevance - diversity * closest.clamp(min=-1) if picked else relevance.clone()
        gain[~available] = float("-inf")
        s = int(gain.argmax())
        picked.append(s)
        available[s] = False
        if len(picked) < min(k, n):
            closest = torch.maximum(closest, similarity_to(E, s))
    return torch.tensor(picked, dtype=torch.long, device=relevance.device)


def diversify(index: LoadedIndex, Q: Tensor, pids: Tensor, scores: Tensor, k: int,
              diversity: float) -> tuple[Tensor, Tensor]:
    """Re-rank a query's best candidates by MMR (see the module docstring); scores stay the MaxSim scores.

    Args:
        index: the index holding the candidates, on the search device.
        Q: the query's embeddings, float32.
        pids, scores: its candidates, best first.

    Shapes: Q (Lq, d); pids (n,) int64; scores (n,) -> ((min(k, n),), (min(k, n),)).
    """
    if pids.numel() == 0 or diversity == 0:
        return pids[:k], scores[:k]
    codes, packed, lengths = index.gather(pids)
    D = index.codec.decompress(codes, packed)  # (M, d)
    E = evidence(Q, D.float(), lengths.to(D.device))  # (n, Lq, d)
    order = mmr(scores.float() / Q.size(0), E, k, diversity)
    return pids[order], scores[order]
