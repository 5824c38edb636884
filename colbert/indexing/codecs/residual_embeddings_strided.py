"""The reference's `colbert.indexing.codecs.residual_embeddings_strided`: ResidualEmbeddingsStrided, the
compressed embeddings of an index grouped by passage, decompressed on lookup."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from colbert.indexing.codec import ResidualCodec
from colbert.indexing.codecs.residual_embeddings import ResidualEmbeddings
from colbert.index.strided_tensor import StridedTensor

__all__ = ["ResidualEmbeddingsStrided"]


class ResidualEmbeddingsStrided:
    """Args: codec; embeddings (a ResidualEmbeddings of the whole index); doclens (P,) embeddings per passage."""

    def __init__(self, codec: ResidualCodec, embeddings: ResidualEmbeddings, doclens: Any) -> None:
        self.codec, self.doclens = codec, torch.as_tensor(doclens, dtype=torch.int64)
        self.codes, self.residuals = embeddings.codes, embeddings.residuals
        self.codes_strided = StridedTensor(self.codes, self.doclens)
        self.residuals_strided = StridedTensor(self.residuals, self.doclens)

    def lookup_pids(self, passage_ids: Any, out_device: str = "cpu") -> tuple[Tensor, Tensor]:
        """Decompressed embeddings of the passages laid end to end, and their lengths.
        Shapes: -> (sum(lengths), d) float32, (n,) int64."""
        codes, lengths = self.codes_strided.lookup(passage_ids)
        residuals, _ = self.residuals_strided.lookup(passage_ids)
        return self.codec.decompress(codes, residuals).to(out_device), lengths

    def lookup_codes(self, passage_ids: Any) -> tuple[Tensor, Tensor]:
        """Centroid ids of the passages' embeddings laid end to end, and their lengths."""
        return self.codes_strided.lookup(passage_ids)
