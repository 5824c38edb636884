"""Training losses over ColBERT embeddings, scored with the same MaxSim as inference (`colbert_score`).

For a micro-batch of B queries, each with nway documents (the positive first):

* **nway cross-entropy**: softmax over a query's nway scores, the positive (column 0) as the label.
* **KL distillation** (when the triples carry teacher scores and `ignore_scores` is False): replaces the
  cross-entropy with KL(teacher || student) over the nway documents, the teacher's scores multiplied by
  `distillation_alpha` before their softmax.
* **in-batch negatives** (`use_ib_negatives`): each query is also scored against every document of the
  micro-batch; its own negatives are left out and its positive is the label. Added to the loss above.

These follow the reference (colbert/training/training.py and ColBERT.compute_ib_loss), with the in-batch columns
masked to -inf instead of gathered, which gives the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from colbert.infra.config import ColBERTConfig
from colbert.modeling.scoring import colbert_score, colbert_score_reduce


@dataclass
class LossParts:
    """The loss to minimise and what it was made of (detached numbers for logging)."""

    loss: Tensor
    nway_loss: float
    ib_loss: float
    positive_score: float
    negative_score: float


def nway_cross_entropy(scores: Tensor) -> Tensor:
    """Cross-entropy with the first column as the label.

    Shapes: scores (B, nway) -> scalar.

    Example:
        >>> round(nway_cross_entropy(torch.tensor([[2.0, 0.0], [0.0, 0.0]])).item(), 4)
        0.41
    """
    labels = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, labels)


def distillation_kl(scores: Tensor, teacher: Tensor, alpha: float = 1.0) -> Tensor:
    """KL(softmax(alpha * teacher) || softmax(scores)), averaged over queries.

    Shapes: scores, teacher (B, nway) -> scalar.

    Example:
        >>> distillation_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item()
        0.0
    """
    target = F.log_softmax(teacher.to(scores) * alpha, dim=-1)  # (B, nway)
    return F.kl_div(F.log_softmax(scores, dim=-1), target, reduction="batchmean", log_target=True)


def all_pairs_scores(Q: Tensor, D: Tensor, D_mask: Tensor, config: Optional[ColBERTConfig] = None) -> Tensor:
    """MaxSim of every query against every document.

    Shapes: Q (B, Lq, d), D (N, Ld, d), D_mask (N, Ld) -> (B, N).
    """
    B, N = Q.size(0), D.size(0)
    scores = D.unsqueeze(0) @ Q.transpose(1, 2).unsqueeze(1)  # (1, N, Ld, d) @ (B, 1, d, Lq) -> (B, N, Ld, Lq)
    mask = D_mask.unsqueeze(0).expand(B, -1, -1).reshape(B * N, -1)  # (B * N, Ld)
    return colbert_score_reduce(scores.flatten(0, 1), mask, config).view(B, N)


def in_batch_negatives_loss(Q: Tensor, D: Tensor, D_mask: Tensor, nway: int,
                            config: Optional[ColBERTConfig] = None) -> Tensor:
    """Cross-entropy of each query over its positive and every other query's documents.

    Document j belongs to query j // nway; query i's positive is document i * nway.

    Shapes: Q (B, Lq, d), D (B * nway, Ld, d), D_mask (B * nway, Ld) -> scalar.
    """
    scores = all_pairs_scores(Q, D, D_mask, config)  # (B, B * nway)
    owner = torch.arange(D.size(0), device=D.device) // nway  # (B * nway,) query of each document
    own = owner.unsqueeze(0) == torch.arange(Q.size(0), device=D.device).unsqueeze(1)  # (B, B * nway)
    positive = torch.arange(Q.size(0), device=D.device) * nway  # (B,)
    own[torch.arange(Q.size(0)), positive] = False  # keep the query's own positive
    return F.cross_entropy(scores.masked_fill(own, float("-inf")), positive)


def colbert_loss(Q: Tensor, D: Tensor, D_mask: Tensor, nway: int, teacher: Optional[Tensor] = None,
                 use_ib_negatives: bool = False, distillation_alpha: float = 1.0,
                 config: Optional[ColBERTConfig] = None) -> LossParts:
    """The reference's training loss for one micro-batch.

    Args:
        Q: query embeddings (B, Lq, d).
        D: document embeddings (B * nway, Ld, d), query i's documents at rows i * nway ... i * nway + nway - 1.
        D_mask: (B * nway, Ld), True where a document token is kept.
        nway: documents per query.
        teacher: (B, nway) teacher scores for distillation, or None for cross-entropy.
        use_ib_negatives: add the in-batch negatives loss.
        distillation_alpha: multiplies the teacher scores before their softmax.
        config: supplies the interaction ('colbert' or 'flipr') to MaxSim.

    Returns:
        LossParts with the loss and detached parts for logging.
    """
    scores = colbert_score(Q.repeat_interleave(nway, dim=0), D, D_mask, config).view(-1, nway)  # (B, nway)
    if teacher is not None:
        main = distillation_kl(scores, teacher, distillation_alpha)
    else:
        main = nway_cross_entropy(scores)
    ib = in_batch_negatives_loss(Q, D, D_mask, nway, config) if use_ib_negatives else None
    loss = main if ib is None else main + ib
    negative = scores[:, 1:].mean().item() if nway > 1 else 0.0
    return LossParts(loss, main.item(), 0.0 if ib is None else ib.item(), scores[:, 0].mean().item(), negative)
