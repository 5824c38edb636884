"""Centroids: k-means (no faiss), seeded and deterministic, L2-normalised and rounded to fp16 as stored.

On CUDA, k-means is fastkmeans (its Triton kernels). On CPU it is `lloyd`, the same algorithm from the same starting
points with exact assignments, through our own matmul-and-refine path (`colbert.index.assign.nearest_centroids`):
fastkmeans' CPU loop reduces its distance blocks with `torch.min`, which costs as much as the matmul itself, and
copies the points. docs/indexing.md has the measured times; `tests/test_indexing.py` checks `lloyd` against
fastkmeans in float32: the same centroids.
"""

from __future__ import annotations

import logging
from typing import Iterator, Protocol, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from colbert.index.assign import (  # noqa: F401  (the screens' names, re-exported for the old import path)
    Int8Centroids, bf16_score_slack, int8_matmul_available, int8_score_slack, nearest_centroids, quantize_rows)

logger = logging.getLogger(__name__)

KMEANS_SEED = 123  # the reference's faiss seed


class Rows(Protocol):
    """Points on disk read a window at a time (`format.ChunkEmbeddings`): what `lloyd` streams instead of a
    tensor, so the sample need not be in memory."""

    shape: tuple[int, int]

    def rows(self, start: int, end: int) -> Tensor: ...

    def take(self, wanted: Tensor, size: int) -> Iterator[Tensor]: ...


Points = Union[Tensor, Rows]


def train_centroids(sample: Points, num_partitions: int, niters: int, device: torch.device,
                    seed: int = KMEANS_SEED, bf16: bool = False) -> Tensor:
    """k-means on the sample (a tensor, or `Rows` on disk that `lloyd` streams); returns L2-normalised centroids
    rounded to fp16 (what the index stores and search uses), as float16. On CPU `lloyd` (with `bf16`, its
    assignments screened in int8 or bf16, the same result); on CUDA fastkmeans, on the sample read whole.

    Shapes: sample (n, d) -> (num_partitions, d).
    """
    n = sample.shape[0]
    if n < num_partitions:
        raise ValueError(f"k-means needs at least as many sample embeddings ({n:,}) as centroids ({num_partitions:,})")
    logger.info("Clustering %s embeddings into %s centroids (%d iterations)", f"{n:,}", f"{num_partitions:,}", niters)
    if device.type == "cpu":
        centroids = lloyd(sample, num_partitions, niters, seed=seed, bf16=bf16)
    else:
        centroids = _fastkmeans(_rows(sample, 0, n), num_partitions, niters, device, seed)
    return F.normalize(centroids, dim=-1).half()


def _fastkmeans(sample: Tensor, k: int, niters: int, device: torch.device, seed: int) -> Tensor:
    """fastkmeans on `device`. Shapes: sample (n, d) -> (k, d) float32 on CPU, not normalised."""
    from fastkmeans import FastKMeans

    kmeans = FastKMeans(d=sample.size(1), k=k, niter=niters, gpu=device.type == "cuda", seed=seed,
                        max_points_per_centroid=1 << 30, verbose=False,
                        **({"device": device} if device.type == "cuda" else {}))
    points = sample.cpu().half().contiguous().numpy()  # fastkmeans converts each block to its compute dtype
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # fastkmeans reseeds the global RNGs; leave the caller's untouched
        kmeans.train(points)
    np.random.set_state(numpy_state)
    return torch.from_numpy(kmeans.centroids).float()


LLOYD_BLOCK = 1 << 13  # points converted to fp32 at once by lloyd's update (2**13 x 128 x 4 B = 4 MiB)
LLOYD_WINDOW = 1 << 14  # points read at once from Rows on disk (2**14 x 128 x fp16 = 4 MiB)


def _rows(points: Points, start: int, end: int) -> Tensor:
    return points[start:end] if isinstance(points, Tensor) else points.rows(start, end)


def _take(points: Points, index: Tensor) -> Tensor:
    """points[index] as float32, reading `points` window by window in ascending order (windows with no wanted row
    are not read). Shapes: index (m,) int64 -> (m, d) float32."""
    if isinstance(points, Tensor):
        return points[index].float()
    order = index.argsort()
    out = torch.empty(index.numel(), points.shape[1])
    first = 0
    for piece in points.take(index[order], LLOYD_WINDOW):
        out[order[first:first + piece.size(0)]] = piece.float()
        first += piece.size(0)
    return out


def lloyd(points: Points, k: int, niters: int, seed: int = KMEANS_SEED, bf16: bool = False) -> Tensor:
    """Euclidean k-means on CPU, fastkmeans' algorithm with exact assignments: start from k points drawn by
    `randperm(n)` of a generator seeded with `seed` (the points fastkmeans starts from), then `niters` times assign
    every point to its nearest centroid and move each centroid to the mean of its points (one with no point is
    reset to a random point).

    The nearest centroid maximises x.c - |c|^2 / 2; `nearest_centroids` finds it through one matmul into a reused
    buffer and, with `bf16`, a low-precision (int8 or bf16) matmul whose candidates are re-scored in float32, so
    bf16 changes the speed, not the result. `points` may be a tensor or `Rows` on disk: each iteration reads them
    twice, `LLOYD_WINDOW` rows at a time, the same arithmetic in the same order either way. Memory: one (k, d) buffer for the centroids
    and their sums, one score buffer, an int32 code per point, and the points when they are a tensor.

    Shapes: points (n, d), any float dtype -> (k, d) float32, not normalised.
    """
    n, d = points.shape
    generator = torch.Generator().manual_seed(seed)
    centroids = _take(points, torch.randperm(n, generator=generator)[:k])  # (k, d)
    codes = torch.empty(n, dtype=torch.int32)
    for _ in range(niters):
        bias = -0.5 * centroids.pow(2).sum(dim=1)  # (k,)
        for start in range(0, n, LLOYD_WINDOW):
            window = _rows(points, start, start + LLOYD_WINDOW)
            codes[start:start + window.size(0)] = nearest_centroids(window, centroids, bf16=bf16, bias=bias)
            del window  # (a mapped window is unmapped)
        sums = centroids.zero_()  # (k, d): the centroids' own buffer, no longer needed (one (k, d) tensor in all)
        for start in range(0, n, LLOYD_WINDOW):
            window = _rows(points, start, start + LLOYD_WINDOW)
            for at in range(0, window.size(0), LLOYD_BLOCK):
                end = min(at + LLOYD_BLOCK, window.size(0))
                sums.index_add_(0, codes[start + at:start + end].long(), window[at:end].float())
            del window
        counts = torch.bincount(codes, minlength=k)  # (k,)
        centroids = sums.div_(counts.clamp_min(1)[:, None].float())
        empty = (counts == 0).nonzero().squeeze(1)
        if empty.numel():
            centroids[empty] = _take(points, torch.randint(0, n, (empty.numel(),), generator=generator))
    return centroids
