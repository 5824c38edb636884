"""ResidualEmbeddings (the reference's `colbert.indexing.codecs.residual_embeddings`, which aliases this module):
the compressed embeddings of an index or of one chunk (codes and packed residuals), read and written through
colbert.index.format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor

from colbert.index import format as index_format

__all__ = ["ResidualEmbeddings", "get_dim_and_nbits", "get_codes_size", "get_residuals_size"]


class ResidualEmbeddings:
    """Shapes: codes (n,) int32; residuals (n, d * nbits / 8) uint8."""

    def __init__(self, codes: Tensor, residuals: Tensor) -> None:
        if codes.dim() != 1 or residuals.dim() != 2 or codes.size(0) != residuals.size(0):
            raise ValueError(f"codes must be (n,) and residuals (n, w); got {tuple(codes.shape)} and "
                             f"{tuple(residuals.shape)}")
        if residuals.dtype != torch.uint8:
            raise ValueError(f"residuals must be uint8 (packed), got {residuals.dtype}")
        self.codes, self.residuals = codes.to(torch.int32), residuals

    def __len__(self) -> int:
        return self.codes.size(0)

    @classmethod
    def load(cls, index_path: str | os.PathLike, chunk_idx: int) -> ResidualEmbeddings:
        """One chunk of an index, checked against its doclens and metadata."""
        meta = index_format.read_metadata(index_path)
        chunk = index_format.read_chunk(index_path, chunk_idx, meta["config"]["dim"], meta["config"]["nbits"])
        return cls(chunk.codes, chunk.residuals)

    @classmethod
    def load_chunks(cls, index_path: str | os.PathLike, chunk_idxs: Iterable[int], num_embeddings: int = 0,
                    load_index_with_mmap: bool = False) -> ResidualEmbeddings:
        """Chunks laid end to end (num_embeddings is not needed: the chunks say how many they hold)."""
        chunks = [cls.load(index_path, k) for k in chunk_idxs]
        return cls(torch.cat([c.codes for c in chunks]), torch.cat([c.residuals for c in chunks]))

    def save(self, path_prefix: str) -> None:
        """Write `{path_prefix}.codes.pt` and `{path_prefix}.residuals.pt`, each through a temporary name."""
        from colbert.utils.io import atomic_torch_save

        atomic_torch_save(self.codes.contiguous(), Path(f"{path_prefix}.codes.pt"))
        atomic_torch_save(self.residuals.contiguous(), Path(f"{path_prefix}.residuals.pt"))


def get_dim_and_nbits(index_path: str | os.PathLike) -> tuple[int, int]:
    """(dim, nbits) of an index, from its metadata.json."""
    config = index_format.read_metadata(index_path)["config"]
    return config["dim"], config["nbits"]


def get_codes_size(index_path: str | os.PathLike, chunk_idx: int) -> int:
    """Embeddings in chunk `chunk_idx` (its metadata file's count)."""
    return int(index_format.read_chunk_metadata(index_path, chunk_idx)["num_embeddings"])


def get_residuals_size(index_path: str | os.PathLike, chunk_idx: int) -> tuple[int, int, int]:
    """(bytes of the chunk's packed residuals, its embeddings, bytes per embedding)."""
    codes_size = get_codes_size(index_path, chunk_idx)
    width = index_format.packed_dim(*get_dim_and_nbits(index_path))
    return codes_size * width, codes_size, width
