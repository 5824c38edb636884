"""ResidualCodec: embeddings <-> centroid codes + packed residual bucket ids (the reference's scheme).

Each embedding is stored as the id of its nearest centroid (int32) and, per dimension, the bucket of its residual
(embedding - centroid) among 2**nbits buckets (nbits bits, packed). Bucket cutoffs and the value each bucket stands
for (its weight) are quantiles of held-out residuals. Decompression is centroid + bucket weights, L2-normalised.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch
from torch import Tensor

from colbert import kernels
from colbert.index.assign import nearest_centroids
from colbert.index import format as index_format
from colbert.index.format import ChunkEmbeddings, Codec

logger = logging.getLogger(__name__)

VALID_NBITS = (1, 2, 4)
COMPRESS_BATCH = 1 << 13  # embeddings compressed at once (their residuals: 2**13 x 128 x fp32 = 4 MiB)
KMEANS_POINTS_PER_CENTROID = 64  # k-means sample cap per centroid (faiss would take up to 256), within the caps below
KMEANS_MIN_POINTS = 1 << 16  # but never fewer points than this (when the collection has them)
KMEANS_MAX_POINTS = 1 << 18  # nor more: 2**18 x 128 dims x fp16 = 64 MiB, whatever the collection size
HELDOUT_FRACTION, HELDOUT_MAX = 0.05, 50_000  # sample share kept out of k-means to fit the residual buckets
SAMPLE_SEED = 12345  # the reference's seed for the passage sample, also the seed of the embedding sample
MIN_HELDOUT = 16  # fewer held-out embeddings than this (a tiny collection): the buckets are fit on the k-means points

Points = Union[Tensor, ChunkEmbeddings]  # (n, d) fp16: in memory, or on disk for a k-means that streams them
KMeans = Callable[[Points, int], Tensor]  # (points, num_partitions) -> centroids (num_partitions, d) fp16


def check_nbits(nbits: int) -> int:
    if nbits not in VALID_NBITS:
        raise ValueError(f"nbits must be 1, 2 or 4 (bits per residual dimension), got {nbits!r}")
    return nbits


def num_partitions_for(num_embeddings: float) -> int:
    """The reference's number of centroids: 2 ** floor(log2(16 * sqrt(num_embeddings))).

    >>> num_partitions_for(157_337)
    4096
    """
    return int(2 ** math.floor(math.log2(16 * math.sqrt(max(num_embeddings, 1)))))


def kmeans_sample_size(num_sample_embeddings: int, num_partitions: int) -> int:
    """How many of the candidate embeddings k-means sees (the rest of them are not loaded)."""
    cap = min(max(KMEANS_POINTS_PER_CENTROID * num_partitions, KMEANS_MIN_POINTS), KMEANS_MAX_POINTS)
    return min(num_sample_embeddings, cap)


@dataclass
class ResidualCodec:
    """Shapes: centroids (C, d) fp16 as fitted and stored, float32 in a LoadedIndex (exactly the same values);
    bucket_cutoffs (2**nbits - 1,) and bucket_weights (2**nbits,) fp32."""

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
        """The codec of stored parts (`format.read_codec`): the one way to rebuild it."""
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


@dataclass(frozen=True)
class CodecSample:
    """Which candidate embeddings fit a codec: positions into the candidates, ascending.

    kmeans: the points the centroids are fitted on; heldout: the embeddings the residual buckets are fitted on,
    kept out of k-means (empty for a tiny collection: the buckets are then fitted on the k-means points).
    Shapes: kmeans (m,) int64; heldout (h,) int64.
    """

    num_partitions: int
    kmeans: Tensor
    heldout: Tensor


def draw_codec_sample(num_candidates: int, num_embeddings: int, seed: int = SAMPLE_SEED) -> CodecSample:
    """The reference's sample for its codec, drawn once: `num_partitions_for(num_embeddings)` centroids; a held-out
    share of the candidates (5 %, at most 50k) for the buckets, which reconstruct better when fitted on points
    k-means did not see; at most `kmeans_sample_size` of the rest for k-means. One random permutation of the
    candidates, seeded, makes the split.

    >>> sample = draw_codec_sample(1_000, 1_000)
    >>> sample.num_partitions, sample.kmeans.numel(), sample.heldout.numel()
    (256, 950, 50)
    """
    num_partitions = num_partitions_for(num_embeddings)
    heldout = int(min(HELDOUT_FRACTION * num_candidates, HELDOUT_MAX))
    heldout = heldout if heldout >= MIN_HELDOUT else 0
    num_points = kmeans_sample_size(num_candidates - heldout, num_partitions)
    chosen = torch.randperm(num_candidates, generator=torch.Generator().manual_seed(seed))[: num_points + heldout]
    return CodecSample(min(num_partitions, num_points), chosen[heldout:].sort().values, chosen[:heldout].sort().values)


def fit_codec(num_candidates: int, num_embeddings: int, nbits: int, points: Callable[[Tensor], Points],
              heldout: Callable[[Tensor], Tensor], kmeans: KMeans, bf16: bool = False) -> ResidualCodec:
    """THE codec recipe, of building (on the encoded embeddings) and of reindexing (on the stored ones,
    decompressed): `draw_codec_sample`, centroids by `kmeans` on its k-means points, then the residual buckets
    (`ResidualCodec.fit`) on its held-out embeddings, gathered once k-means is done.

    Args:
        num_candidates: the embeddings the sample is drawn from (the build: those of the plan's sampled passages).
        num_embeddings: all the index's embeddings (the number of centroids follows from it).
        points: positions (ascending) -> those candidates, fp16, in that order (a tensor, or rows on disk).
        heldout: positions (ascending) -> those candidates as a float32 contiguous tensor, which the fit then
            turns into its residuals in place.
        kmeans: (points, num_partitions) -> centroids (num_partitions, d) fp16.
        bf16: find the codes of the held-out embeddings through the faster screens (the same codes).
    """
    sample = draw_codec_sample(num_candidates, num_embeddings)
    centroids = kmeans(points(sample.kmeans), sample.num_partitions)  # the points are dropped once it returns
    fit_on = heldout(sample.heldout if sample.heldout.numel() else sample.kmeans)  # (h, d) float32
    logger.info("Fitted %s centroids on %s embeddings, residual buckets on %s", f"{centroids.size(0):,}",
                f"{sample.kmeans.numel():,}", f"{fit_on.size(0):,}")
    return ResidualCodec.fit(centroids, fit_on, nbits, bf16=bf16, in_place=True)
