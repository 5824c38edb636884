"""The reference's `colbert.indexing.collection_encoder`: CollectionEncoder(config, checkpoint).encode_passages.

Encoding is colbert.indexing.encoder.encode_passages (the Indexer's); this gives it the reference's face.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from colbert.indexing.encoder import encode_passages
from colbert.infra.config import ColBERTConfig
from colbert.infra.device import indexing_uses_bf16

__all__ = ["CollectionEncoder"]


class CollectionEncoder:
    """Args: config (index_bsize is read); checkpoint, a colbert.modeling.checkpoint.Checkpoint."""

    def __init__(self, config: ColBERTConfig, checkpoint: Any) -> None:
        self.config, self.checkpoint = config, checkpoint
        self.use_gpu = checkpoint.device.type != "cpu"

    def encode_passages(self, passages: Sequence[str]) -> tuple[Tensor, list[int]]:
        """(embeddings laid end to end (sum(doclens), d) fp16 on CPU, doclens); (None, None) for no passage, as the
        reference."""
        if len(passages) == 0:
            return None, None  # type: ignore[return-value]
        bf16 = indexing_uses_bf16(self.config, self.checkpoint.device)
        with torch.inference_mode():
            return encode_passages(self.checkpoint, list(passages), self.config.index_bsize, show_progress=False,
                                   bf16=bf16)
