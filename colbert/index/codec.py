"""ResidualCodec: embeddings <-> centroid codes + packed residual bucket ids (the reference's scheme).

Each embedding is stored as the id of its nearest centroid (int32) and, per dimension, the bucket of its residual
(embedding - centroid) among 2**nbits buckets (nbits bits, packed). Bucket cutoffs and the value each bucket stands
for (its weight) are quantiles of held-out residuals. Decompression is centroid + bucket weights, L2-normalised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from colbert import kernels
from colbert.index.assign import nearest_centroids
from colbert.index import format as index_format
from colbert.index.format import Codec

VALID_NBITS = (1, 2, 4)
COMPRESS_BATCH = 1 << 13  # embeddings compressed at once (their residuals: 2**13 x 128 x fp32 = 4 MiB)


def check_nbits(nbits: int) -> int:
    if nbits not in VALID_NBITS:
        raise ValueError(f"nbits must be 1, 2 or 4 (bits per residual dimension), got {nbits!r}")
    return nbits


@dataclass
class ResidualCodec:
    """Shapes: centroids (C, d) fp16; bucket_cutoffs (2**nbits - 1,) and bucket_weights (2**nbits,) fp32."""

    centroids: Tensor
    bucket_cutoffs: Tensor
    bucket_weights: Tensor
    avg_residual: Tensor
    nbits: int

    @property
    def dim(self) -> int:
        return self.centroids.size(1)

    @classmethod
    def from_parts(cls, parts: Codec, nbits: int) -> ResidualCodec:
        """The codec of stored parts (`format.read_codec`, `LoadedIndex.codec_parts`): the one way to rebuild it."""
        return cls(parts.centroids, parts.bucket_cutoffs, parts.bucket_weights, parts.avg_residual, check_nbits(nbits))

    @property
    def parts(self) -> Codec:
        """What the index stores of it (format.write_codec's arguments)."""
        return Codec(self.centroids, self.bucket_cutoffs, self.bucket_weights, self.avg_residual)

    @classmethod
    def load(cls, index_path: str | os.PathLike) -> ResidualCodec:
        """The codec of the index at `index_path`, checked against its metadata.json (the reference's loader)."""
        meta = index_format.read_metadata(index_path)
        dim, nbits = meta["config"]["dim"], meta["config"]["nbits"]
        return cls.from_parts(index_format.read_codec(index_path, dim, nbits, meta["num_partitions"]), nbits)

    @classmethod
    def fit(cls, centroids: Tensor, heldout: Tensor, nbits: int, bf16: bool = False,
            in_place: bool = False) -> "ResidualCodec":
        """Bucket cutoffs and weights from the residuals of held-out embeddings (the reference's quantiles); `bf16`
        finds their codes faster, the same ones (see `nearest_centroids`). With `in_place`, a float32 contiguous
        `heldout` is turned into the residuals and then reordered (no copy of it is made).

        Shapes: centroids (C, d) fp16, heldout (n, d).
        """
        check_nbits(nbits)
        C = centroids.float()  # (C, d), shared with nearest_centroids (which would make its own copy)
        codes = nearest_centroids(heldout, C, bf16=bf16)  # (n,)
        own = in_place and heldout.dtype == torch.float32 and heldout.is_contiguous()
        residuals = heldout if own else heldout.to(torch.float32, copy=True)  # (n, d), ours to modify
        for start in range(0, residuals.size(0), COMPRESS_BATCH):  # in place: one (n, d) buffer in all
            residuals[start:start + COMPRESS_BATCH] -= C[codes[start:start + COMPRESS_BATCH].long()]
        avg_residual = sum(float(block.abs().sum()) for block in residuals.split(COMPRESS_BATCH)) / residuals.numel()
        options = 2**nbits
        quantiles = np.arange(options, dtype=np.float64) / options  # (options,)
        # numpy's linear quantiles are torch.quantile's (the reference's) without its sort: the residuals are
        # partitioned where they lie instead of a sorted copy plus int64 indices (75 MiB at 50k held-out embeddings)
        both = np.quantile(residuals.numpy().reshape(-1), np.concatenate([quantiles[1:], quantiles + 0.5 / options]),
                           overwrite_input=True)
        both = torch.from_numpy(both.astype(np.float32))
        cutoffs, weights = both[:options - 1], both[options - 1:]  # (options - 1,), (options,)
        return cls(centroids.half(), cutoffs, weights, torch.tensor(avg_residual, dtype=torch.float32), nbits)

    def compress(self, embeddings: Tensor, bf16: bool = False) -> tuple[Tensor, Tensor]:
        """Codes and packed residual buckets; with `bf16` (a CPU with native bf16) the codes are found through an
        int8 or bf16 matmul, re-checked in float32 (see `nearest_centroids`: the same codes).

        Shapes: embeddings (n, d) -> codes (n,) int32, residuals (n, d * nbits / 8) uint8."""
        C = self.centroids.float()  # (C, d), shared with nearest_centroids (which would make its own copy)
        codes = nearest_centroids(embeddings, C, bf16=bf16)  # (n,)
        packed = torch.empty(embeddings.size(0), self.dim * self.nbits // 8, dtype=torch.uint8)
        buffer = torch.empty(min(COMPRESS_BATCH, embeddings.size(0)), self.dim)  # one (b, d) fp32 block in all
        for start in range(0, embeddings.size(0), COMPRESS_BATCH):
            block = embeddings[start:start + COMPRESS_BATCH]  # (b, d)
            residuals = buffer[:block.size(0)]
            torch.index_select(C, 0, codes[start:start + COMPRESS_BATCH].long(), out=residuals)
            residuals.neg_().add_(block)  # embedding - centroid, the same float32 as block.float() - centroid
            packed[start:start + block.size(0)] = kernels.compress_residuals(residuals, self.bucket_cutoffs,
                                                                             self.nbits)
        return codes, packed

    def decompress(self, codes: Tensor, residuals: Tensor) -> Tensor:
        """Shapes: codes (n,), residuals (n, d * nbits / 8) uint8 -> (n, d) float32, L2-normalised."""
        return kernels.decompress_residuals(codes, residuals, self.centroids, self.bucket_weights, self.nbits)
