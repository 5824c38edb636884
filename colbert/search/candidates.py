"""PLAID stage 1: centroid scores -> probed cells -> candidate pids (the union of the cells' inverted lists).

Letters: C centroids, d dim, Lq query vectors, n candidates.

As the reference's CandidateGeneration: every query vector probes its `ncells` best centroids by
`centroids.float() @ Q.T`; the candidates are the sorted, de-duplicated pids of those centroids' IVF lists. The centroid
scores are returned too: stages 2-3 (colbert.search.plaid) reuse them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from colbert import kernels

__all__ = ["centroid_scores", "generate_candidates", "ivf_candidates", "probe_cells"]


def centroid_scores(centroids: Tensor, Q: Tensor) -> Tensor:
    """Every centroid against every query vector.

    Args:
        centroids: the index's centroids, float32 (convert fp16 ones once, not per query).
        Q: one query's embeddings, float32.

    Returns:
        The dot products, float32.

    Shapes:
        centroids (C, d); Q (Lq, d); returns (C, Lq).

    Example:
        >>> centroid_scores(torch.eye(3), torch.tensor([[0.0, 1.0, 0.0]]))
        tensor([[0.],
                [1.],
                [0.]])
    """
    return centroids @ Q.T  # (C, d) @ (d, Lq) -> (C, Lq)


def probe_cells(scores: Tensor, ncells: int) -> Tensor:
    """The centroids probed: each query vector's `ncells` best, de-duplicated and sorted.

    Args:
        scores: `centroid_scores(centroids, Q)`.
        ncells: centroids per query vector (capped at C).

    Returns:
        Sorted unique centroid ids, int64.

    Shapes:
        scores (C, Lq); returns (<= ncells * Lq,).

    Example:
        >>> probe_cells(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.7]]), ncells=2)
        tensor([0, 1, 2])
    """
    ncells = min(ncells, scores.size(0))
    if ncells == 1:
        cells = scores.argmax(dim=0)  # (Lq,)
    else:
        cells = scores.topk(ncells, dim=0, sorted=False).indices  # (ncells, Lq)
    return torch.unique(cells.reshape(-1))  # sorted


def ivf_candidates(ivf: Tensor, ivf_offsets: Tensor, cells: Tensor) -> Tensor:
    """The union of the inverted lists of `cells`: sorted unique pids, in the IVF's dtype (int32 as the reference).

    Shapes:
        ivf (sum of list lengths,); ivf_offsets (C + 1,) int64, list c is ivf[ivf_offsets[c]:ivf_offsets[c + 1]];
        cells (m,) int64; returns (n,).

    Example:
        >>> ivf_candidates(torch.tensor([3, 5, 1, 3, 7], dtype=torch.int32), torch.tensor([0, 2, 4, 5]),
        ...                torch.tensor([0, 1]))
        tensor([1, 3, 5], dtype=torch.int32)
    """
    pids, _ = kernels.gather_segments(ivf, ivf_offsets, cells)  # (sum of the cells' list lengths,)
    return torch.unique(pids)  # sorted


def generate_candidates(Q: Tensor, centroids: Tensor, ivf: Tensor, ivf_offsets: Tensor,
                        ncells: int) -> tuple[Tensor, Tensor]:
    """PLAID stage 1 for one query.

    Args:
        Q: the query vectors that probe (the reference uses the first query_maxlen), float32.
        centroids: float32. ivf, ivf_offsets: the index's inverted lists (see `ivf_candidates`).
        ncells: centroids probed per query vector.

    Returns:
        (candidate pids sorted, int32; centroid scores, float32).

    Shapes:
        Q (Lq, d); centroids (C, d); returns ((n,), (C, Lq)).
    """
    scores = centroid_scores(centroids, Q)  # (C, Lq)
    cells = probe_cells(scores, ncells)  # (m,)
    return ivf_candidates(ivf, ivf_offsets, cells), scores
