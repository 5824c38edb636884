"""Modeling: tokenization, the ColBERT encoder, MaxSim scoring and the inference Checkpoint."""

from colbert.modeling.scoring import colbert_score, colbert_score_packed, colbert_score_reduce

__all__ = ["colbert_score", "colbert_score_packed", "colbert_score_reduce"]
