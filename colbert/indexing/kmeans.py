"""Centroids through fastkmeans (no faiss): seeded, deterministic on CPU, L2-normalised, fp16 as stored."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from colbert import kernels

logger = logging.getLogger(__name__)

KMEANS_SEED = 123  # the reference's faiss seed
# fastkmeans allocates a fresh distance block per (points, centroids) chunk pair. At 2**10 x 2**12 (16 MiB in fp32,
# 8 MiB in bf16) the allocator reuses its memory; 64 MiB blocks are mapped and page-faulted anew every time, which
# made 4 iterations over 2**18 points x 8,192 centroids 1.35x slower here (16.5 s vs 12.3 s in bf16).
CPU_CHUNKS = {"chunk_size_data": 1 << 10, "chunk_size_centroids": 1 << 12}


def train_centroids(sample: Tensor, num_partitions: int, niters: int, device: torch.device,
                    seed: int = KMEANS_SEED, bf16: bool = False) -> Tensor:
    """k-means on the sample; returns L2-normalised centroids rounded to fp16 (what the index stores and search
    uses), as float16. With `bf16` (CPU only) fastkmeans computes distances in bf16; the centroid means are
    accumulated in fp32 either way.

    Shapes: sample (n, d) -> (num_partitions, d).
    """
    from fastkmeans import FastKMeans

    n, dim = sample.shape
    if n < num_partitions:
        raise ValueError(f"k-means needs at least as many sample embeddings ({n:,}) as centroids ({num_partitions:,})")
    logger.info("Clustering %s embeddings into %s centroids (%d iterations)", f"{n:,}", f"{num_partitions:,}", niters)
    kmeans = FastKMeans(d=dim, k=num_partitions, niter=niters, gpu=device.type == "cuda", seed=seed,
                        max_points_per_centroid=1 << 30, verbose=False,
                        dtype=torch.bfloat16 if bf16 and device.type == "cpu" else None,
                        **({"device": device} if device.type == "cuda" else CPU_CHUNKS))
    # fastkmeans converts each block of points to its compute dtype, so it can read the fp16 sample in place: no fp32
    # copy of the whole sample (128 MiB at 2**18 points), and the same centroids as from fp32 points.
    points = sample.cpu().half().contiguous().numpy()
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # fastkmeans reseeds the global RNGs; leave the caller's untouched
        kmeans.train(points)
    np.random.set_state(numpy_state)
    centroids = torch.from_numpy(kmeans.centroids).float()  # (C, d)
    return F.normalize(centroids, dim=-1).half()


SCORE_BLOCK = 1 << 24  # centroid scores held at once by nearest_centroids: 2**24 fp32 = 64 MiB, whatever C is
BF16_UNIT = 2.0 ** -9  # the relative error of one rounding to bfloat16 (8 significant bits, round to nearest)


def bf16_score_slack(rows: Tensor, centroids: Tensor) -> Tensor:
    """Twice a bound on |bf16 score - exact score| for each row against every centroid, when both sides are rounded
    to bfloat16, multiplied with float32 accumulation (as oneDNN's AVX512-BF16 and AMX kernels do) and the product
    is rounded to bfloat16 again.

    Rounding the inputs moves each term x_k c_k by at most (2u + u^2) |x_k c_k|, so the dot product by at most
    (2u + u^2) |x| |c| (Cauchy-Schwarz), with u = 2^-9; float32 accumulation adds at most d 2^-24 |x| |c|; rounding
    the result adds u |score| <= u (1 + u)^2 |x| |c|. If every approximate score is within e of the exact one, the
    true nearest centroid scores at least max(approximate) - 2e approximately: a candidate of `refine_codes`.

    Shapes: rows (b, d), centroids (C, d) -> (b,) float32.
    """
    u, d = BF16_UNIT, rows.size(1)
    factor = 3 * u + 4 * u * u + d * 2.0 ** -24  # >= (2u + u^2) + u (1 + u)^2 + d 2^-24
    return 2 * factor * rows.float().norm(dim=1) * centroids.float().norm(dim=1).max()


def nearest_centroids(embeddings: Tensor, centroids: Tensor, batch: int | None = None, bf16: bool = False) -> Tensor:
    """Code of each embedding: the centroid with the largest float32 dot product, in batches of `batch` rows
    (default: as many as keep batch x C fp32 scores within SCORE_BLOCK, so memory does not grow with the number of
    centroids). One score buffer serves every batch (a fresh 64 MiB tensor per batch costs its page faults anew).

    With `bf16` the batch x C scores are computed in bfloat16 (about 2.5x the fp32 rate on CPUs with native bf16)
    and `kernels.refine_codes` re-scores in float32 the centroids within `bf16_score_slack` of each row's best: the
    true nearest centroid is always among them, so the codes are the float32 ones (up to float32 ties).

    Shapes: embeddings (n, d), centroids (C, d) -> (n,) int32.
    """
    batch = batch or max(1, SCORE_BLOCK // centroids.size(0))
    C = centroids.float()
    C_low = C.bfloat16() if bf16 else None
    n = embeddings.size(0)
    codes = torch.empty(n, dtype=torch.int32, device=embeddings.device)
    scores = torch.empty(min(batch, n), C.size(0), dtype=torch.bfloat16 if bf16 else torch.float32, device=C.device)
    for start in range(0, n, batch):
        block = embeddings[start:start + batch].to(C.device).float()  # (b, d)
        out = scores[:block.size(0)]  # (b, C)
        if bf16:
            torch.mm(block.bfloat16(), C_low.T, out=out)
            best = kernels.refine_codes(out, bf16_score_slack(block, C), block, C)  # (b,)
        else:
            best = torch.mm(block, C.T, out=out).argmax(dim=1)  # (b,)
        codes[start:start + block.size(0)] = best.to(torch.int32)
    return codes
