"""MaxSim on padded and on packed documents.

For each query vector, the best dot product over the document's vectors; summed over query vectors. Padding
positions never win (they are set to -9999, as in the reference). Unlike the reference's CPU path, a negative
per-vector maximum is kept as is, not clamped to 0 (its GPU path does the same).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from colbert.infra.config import ColBERTConfig

PAD_SCORE = -9999.0  # the reference's score for padding positions


def colbert_score_reduce(scores_padded: Tensor, D_mask: Tensor, config: Optional[ColBERTConfig] = None) -> Tensor:
    """Max over document tokens, sum over query tokens.

    Shapes: scores_padded (B, Ld, Lq), D_mask (B, Ld) or (B, Ld, 1) -> (B,).
    """
    interaction = config.interaction if config is not None else "colbert"
    padding = ~D_mask.view(scores_padded.size(0), scores_padded.size(1)).bool()  # (B, Ld)
    scores = scores_padded.masked_fill(padding.unsqueeze(-1), PAD_SCORE).max(1).values  # (B, Lq)
    if interaction == "colbert":
        return scores.sum(-1)
    if interaction == "flipr":
        query_maxlen = config.query_maxlen  # type: ignore[union-attr]
        A = scores[:, :query_maxlen].topk(query_maxlen // 2, dim=-1).values.sum(-1)  # (B,)
        extra = scores[:, query_maxlen:]  # (B, Lq - query_maxlen): context tokens
        B = extra.topk(8, dim=-1).values.sum(-1) if extra.size(1) >= 8 else 0
        return A + B
    raise ValueError(f"Unknown interaction {interaction!r}; use 'colbert' or 'flipr'")


def colbert_score(Q: Tensor, D_padded: Tensor, D_mask: Tensor, config: Optional[ColBERTConfig] = None) -> Tensor:
    """MaxSim of queries against padded documents.

    If Q has one query it is compared with every document; otherwise query i with document i.

    Shapes: Q (1 | B, Lq, d), D_padded (B, Ld, d), D_mask (B, Ld) -> (B,).

    Example:
        >>> Q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> D = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.0, 0.0]]])
        >>> colbert_score(Q, D, torch.tensor([[1, 1], [1, 0]]))
        tensor([1.5000, 1.0000])
    """
    if Q.dim() != 3 or D_padded.dim() != 3:
        raise ValueError(f"Expected Q (n, Lq, d) and D (B, Ld, d), got {tuple(Q.shape)} and {tuple(D_padded.shape)}")
    if Q.size(0) not in (1, D_padded.size(0)):
        raise ValueError(f"Q holds {Q.size(0)} queries for {D_padded.size(0)} documents; pass 1 or one per document")
    Q = Q.to(device=D_padded.device, dtype=D_padded.dtype)
    scores = D_padded @ Q.transpose(1, 2)  # (B, Ld, Lq)
    return colbert_score_reduce(scores.float(), D_mask.to(D_padded.device), config)


def colbert_score_packed(Q: Tensor, D_packed: Tensor, D_lengths: Tensor,
                         config: Optional[ColBERTConfig] = None) -> Tensor:
    """MaxSim of one query against documents laid end to end.

    Shapes: Q (Lq, d) or (1, Lq, d), D_packed (sum(D_lengths), d), D_lengths (B,) -> (B,).

    Example:
        >>> Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> D = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
        >>> colbert_score_packed(Q, D, torch.tensor([2, 1]))
        tensor([1.5000, 1.0000])
    """
    from colbert import kernels

    Q = Q.squeeze(0) if Q.dim() == 3 else Q
    if Q.dim() != 2 or D_packed.dim() != 2:
        raise ValueError(f"Expected Q (Lq, d) and D (N, d), got {tuple(Q.shape)} and {tuple(D_packed.shape)}")
    D_lengths = D_lengths.to(device=D_packed.device, dtype=torch.long)
    if int(D_lengths.sum()) != D_packed.size(0):
        raise ValueError(f"D_lengths sum to {int(D_lengths.sum())} but D_packed has {D_packed.size(0)} rows")
    scores = D_packed @ Q.to(device=D_packed.device, dtype=D_packed.dtype).T  # (N, Lq)
    if config is not None and config.interaction != "colbert":
        padded, mask = pad_packed(scores, D_lengths)
        return colbert_score_reduce(padded, mask, config)
    return kernels.segmented_maxsim(scores.float(), D_lengths)


def pad_packed(packed: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Packed rows -> zero-padded per document.

    Shapes: packed (sum(lengths), ...), lengths (B,) -> padded (B, max, ...), mask (B, max) bool.
    """
    lengths = lengths.to(packed.device)
    maxlen = int(lengths.max()) if lengths.numel() else 0
    mask = torch.arange(maxlen, device=packed.device) < lengths[:, None]  # (B, max)
    padded = packed.new_zeros((lengths.numel(), maxlen, *packed.shape[1:]))
    padded[mask] = packed
    return padded, mask

