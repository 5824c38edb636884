"""PLAID stages 2-4 (prune by centroids, decompress, exact MaxSim, top-k), exhaustive search, filtering.

Letters: C centroids, d dim, P passages, Lq query vectors, n candidates, M embeddings of the documents at hand.

One query runs `plaid_search`:
  1. candidates: the pids of the `ncells` best centroids of every query vector (colbert.search.candidates);
  2. approximate score from centroid codes only, counting centroids whose best score over the query vectors is
     >= centroid_score_threshold; keep the top `ndocs`;
  3. the same score over all codes; keep the top `ndocs // 4`;
  4. decompress those documents' residuals and rank them by exact MaxSim (`rank`; diverse search runs
     `rank_with_evidence`, which also returns the embedding each query vector matched in each document).
Ties in stages 2-3 go to the larger pid, as in the reference's priority queue, so the survivors equal the
reference's. `exhaustive_search` scores every document (or a given list) by MaxSim over decompressed embeddings,
a block of documents at a time. Everything here works on pids (0..P-1); the Searcher maps the user's ids.
The index is a LoadedIndex on the search device (`LoadedIndex.to`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from colbert import kernels
from colbert.search.candidates import generate_candidates
from colbert.index.loaded import LoadedIndex
from colbert.search.params import SearchParams

logger = logging.getLogger(__name__)

FilterFn = Callable[[Tensor], Tensor]

EXACT_BLOCK_TOKENS = 1 << 16  # embeddings decompressed at once by exhaustive search: 2**16 x 128 dims x 4 B = 32 MiB
EXACT_SCORES_BYTES = 1 << 26  # one block's (M, B * Lq) float32 scores when B queries share a pass: 64 MiB


def top_by_score(pids: Tensor, scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The `n` best (pid, score) pairs, by score then by pid, both descending (the reference's priority queue).

    Shapes: pids (m,) int64, unique; scores (m,); returns ((min(n, m),), (min(n, m),)).

    Example:
        >>> top_by_score(torch.tensor([4, 7, 9, 2]), torch.tensor([1.0, 3.0, 1.0, 2.0]), 3)
        (tensor([7, 2, 9]), tensor([3., 2., 1.]))
    """
    if n < len(scores):
        cutoff = scores.topk(n, sorted=False).values.min()
        keep = scores >= cutoff  # (>= n,) the n best and any ties with the n-th
        pids, scores = pids[keep], scores[keep]
    by_pid = pids.argsort(descending=True)  # ties on score go to the larger pid
    pids, scores = pids[by_pid], scores[by_pid]
    order = scores.argsort(descending=True, stable=True)[:n]
    return pids[order], scores[order]


def apply_filter(filter_fn: FilterFn, pids: Tensor, num_passages: int) -> Tensor:
    """Call the user's `filter_fn` on candidate pids and check what it returns.

    filter_fn takes the candidates (int32, as in the reference) and returns the pids to keep as an integer tensor
    (a bool mask over its input is accepted too). Pids it returns that were not candidates are scored as well, as in
    the reference.

    Returns:
        The kept pids, sorted and unique, int64.
    """
    kept = filter_fn(pids)
    if not isinstance(kept, Tensor):
        raise TypeError(f"filter_fn must return a torch.Tensor of pids, got {type(kept).__name__}")
    if kept.dtype == torch.bool and kept.shape == pids.shape:
        kept = pids[kept.to(pids.device)]
    if kept.dim() != 1 or kept.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"filter_fn must return a 1-D int32/int64 tensor of pids (or a bool mask over its input), "
                        f"got {kept.dtype} of shape {tuple(kept.shape)}")
    kept = kept.to(pids.device).long()
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= num_passages):
        raise ValueError(f"filter_fn returned pids in [{int(kept.min())}, {int(kept.max())}], outside the index's "
                         f"[0, {num_passages:,})")
    return torch.unique(kept)


def prune(index: LoadedIndex, scores: Tensor, pids: Tensor, params: SearchParams) -> Tensor:
    """PLAID stages 2-3: the `params.nfinal` candidates with the best centroid-only scores, best first.

    Shapes: scores (C, Lq) centroid scores; pids (n,) int64; returns (<= ndocs // 4,) int64.
    """
    keep = scores.amax(dim=1) >= params.centroid_score_threshold  # (C,) centroids that count in stage 2
    approx = kernels.centroid_maxsim(scores, index.codes, index.doc_offsets, pids, keep)  # (n,)
    pids, _ = top_by_score(pids, approx, params.ndocs)
    approx = kernels.centroid_maxsim(scores, index.codes, index.doc_offsets, pids)  # (<= ndocs,)
    pids, _ = top_by_score(pids, approx, params.nfinal)
    return pids


def rank(index: LoadedIndex, Q: Tensor, pids: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """PLAID stage 4: exact MaxSim over decompressed embeddings, top k, best first.

    Shapes: Q (Lq, d); pids (n,) int64; returns ((min(k, n),) int64, (min(k, n),) float32).
    """
    scores = index.maxsim(Q, pids)  # (n,)
    order = scores.argsort(descending=True, stable=True)[:k]
    return pids[order], scores[order]


@dataclass(frozen=True)
class Evidence:
    """What each document's MaxSim score rests on: the decompressed embedding each query vector matched in it (its
    MaxSim term). Query vectors of a document that matched the same embedding share one row of `vectors`.

    Attributes:
        vectors: float32 (u, d), matched embeddings (zeros for an empty document); rows no index names are unused.
        index: int64 (n, Lq), the row of `vectors` that each query vector matched in each document.
    """

    vectors: Tensor
    index: Tensor

    @classmethod
    def from_rows(cls, vectors: Tensor, first: Tensor, order: Tensor) -> Evidence:
        """From `kernels.decompress_maxsim_rows`' vectors and first query vectors, for the documents at positions
        `order`: each query vector points at the vector of the first of its document's query vectors that matched
        the same row, so a document's distinct matches are its distinct indexes.

        Shapes: vectors (N, Lq, d); first (N, Lq); order (n,) -> Evidence of n documents, `vectors` kept as
        (N * Lq, d).
        """
        return cls(vectors.reshape(-1, vectors.size(-1)), order[:, None] * first.size(1) + first[order])

    def dense(self) -> Tensor:
        """Every document's Lq matched vectors. Shapes: -> (n, Lq, d)."""
        return self.vectors[self.index]


def rank_with_evidence(index: LoadedIndex, Q: Tensor, pids: Tensor, k: int) -> tuple[Tensor, Tensor, Evidence]:
    """`rank`, also returning the kept documents' `Evidence`, found by the same pass over their embeddings.

    Shapes: Q (Lq, d); pids (n,) int64; returns ((k',) int64, (k',) float32, Evidence of k' documents), k' = min(k, n).
    """
    codes, packed, lengths = index.gather(pids)
    scores, _, vectors, first = kernels.decompress_maxsim_rows(Q, codes, packed, lengths, index.centroids,
                                                               index.bucket_weights, index.nbits)  # (n,), ...
    order = scores.argsort(descending=True, stable=True)[:k]  # the order of `rank`: the scores are the same
    return pids[order], scores[order], Evidence.from_rows(vectors, first, order)


def evidence(index: LoadedIndex, Q: Tensor, pids: Tensor) -> Evidence:
    """The `Evidence` of documents already ranked, in the order given (one pass over their embeddings).

    Shapes: Q (Lq, d); pids (n,) int64.
    """
    codes, packed, lengths = index.gather(pids)
    _, _, vectors, first = kernels.decompress_maxsim_rows(Q, codes, packed, lengths, index.centroids,
                                                          index.bucket_weights, index.nbits)  # (n, Lq, d), (n, Lq)
    return Evidence.from_rows(vectors, first, torch.arange(len(pids), device=first.device))


def survivors(index: LoadedIndex, Q: Tensor, params: SearchParams, probe_tokens: Optional[int] = None,
              filter_fn: Optional[FilterFn] = None) -> Tensor:
    """PLAID stages 1-3 for one query: the `params.nfinal` documents that stage 4 scores exactly.

    Args: as `plaid_search`. Shapes: Q (Lq, d); returns (<= params.nfinal,) int64.
    """
    probe = Q if probe_tokens is None else Q[:probe_tokens]  # (Lq', d)
    pids, scores = generate_candidates(probe, index.centroids, index.ivf, index.ivf_offsets, params.ncells)
    if filter_fn is not None:
        pids = apply_filter(filter_fn, pids, index.num_passages)
    return prune(index, scores, index.drop_removed(pids.long()), params)


def plaid_search(index: LoadedIndex, Q: Tensor, params: SearchParams, k: int, probe_tokens: Optional[int] = None,
                 filter_fn: Optional[FilterFn] = None) -> tuple[Tensor, Tensor]:
    """One query through the four PLAID stages.

    Args:
        index: the index on the search device.
        Q: the query's embeddings, float32.
        params: ncells, centroid_score_threshold, ndocs (`search_params(k, config)`).
        k: results wanted; at most `params.ndocs // 4` come back.
        probe_tokens: only the first this many query vectors probe centroids and score stages 2-3 (the reference
            uses query_maxlen, which matters for full_length_search); None: all.
        filter_fn: applied to the stage-1 candidates (see `apply_filter`).

    Returns:
        (pids, scores), best first.

    Shapes:
        Q (Lq, d); returns ((<= k,) int64, (<= k,) float32).
    """
    return rank(index, Q, survivors(index, Q, params, probe_tokens, filter_fn), k)


def _blocks(lengths: Tensor, budget: int) -> list[tuple[int, int]]:
    """Split documents laid end to end into runs of about `budget` embeddings (a run exceeds it by at most one
    document). Returns [(first document, end document), ...]."""
    if lengths.numel() == 0:
        return []
    ends = lengths.cumsum(0)  # (n,)
    block_of = torch.div((ends - 1).clamp(min=0), budget, rounding_mode="floor")  # (n,) by each doc's last token
    _, counts = torch.unique_consecutive(block_of, return_counts=True)
    bounds = [0, *counts.cumsum(0).tolist()]
    return list(zip(bounds[:-1], bounds[1:]))


def _merge_top(best: tuple[Tensor, Tensor], pids: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    pids, scores = torch.cat([best[0], pids]), torch.cat([best[1], scores])
    if len(scores) > k:
        top = scores.topk(k, sorted=False).indices
        pids, scores = pids[top], scores[top]
    return pids, scores


def exhaustive_search(index: LoadedIndex, Qs: Tensor, k: int, pids: Optional[Tensor] = None) -> list[tuple[Tensor,
                                                                                                         Tensor]]:
    """MaxSim of every query against every document of `pids` (default: the whole index), decompressed a block at
    a time so memory stays bounded; the top k per query, best first.

    Args:
        index: the index on the search device.
        Qs: the queries' embeddings, float32; queries share each block's decompression.
        k: results per query.
        pids: the documents to score, int64, unique; None scores all.

    Returns:
        One (pids, scores) pair per query.

    Shapes:
        Qs (B, Lq, d); pids (n,); returns B x ((min(k, n),) int64, (min(k, n),) float32).
    """
    B, Lq, _ = Qs.shape
    pids = index.drop_removed(torch.arange(index.num_passages, device=index.device) if pids is None else pids)
    lengths = index.doc_offsets[pids + 1] - index.doc_offsets[pids]  # (n,)
    budget = max(1, min(EXACT_BLOCK_TOKENS, EXACT_SCORES_BYTES // (4 * B * Lq)))
    empty = (pids.new_empty(0), Qs.new_empty(0))
    best = [empty] * B
    for start, end in _blocks(lengths, budget):
        block = pids[start:end]
        if B == 1:
            best[0] = _merge_top(best[0], block, index.maxsim(Qs[0], block), k)
            continue
        codes, packed, block_lengths = index.gather(block)
        D = kernels.decompress_residuals(codes, packed, index.centroids, index.bucket_weights, index.nbits)  # (M, d)
        S = D @ Qs.reshape(B * Lq, -1).T  # (M, B * Lq)
        for b in range(B):
            scores = kernels.segmented_maxsim(S[:, b * Lq:(b + 1) * Lq].contiguous(), block_lengths)  # (n_block,)
            best[b] = _merge_top(best[b], block, scores, k)
    out = []
    for top_pids, top_scores in best:
        order = top_scores.argsort(descending=True, stable=True)
        out.append((top_pids[order], top_scores[order]))
    return out
