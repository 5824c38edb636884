"""Centroids through fastkmeans (no faiss): seeded, deterministic on CPU, L2-normalised, fp16 as stored."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

KMEANS_SEED = 123  # the reference's faiss seed
CPU_CHUNKS = {"chunk_size_data": 1 << 12, "chunk_size_centroids": 1 << 12}  # 2**12 x 2**12 fp32 distances = 64 MiB


def train_centroids(sample: Tensor, num_partitions: int, niters: int, device: torch.device,
                    seed: int = KMEANS_SEED) -> Tensor:
    """k-means on the sample; returns L2-normalised centroids rounded to fp16 (what the index stores and search
    uses), as float16.

    Shapes: sample (n, d) -> (num_partitions, d).
    """
    from fastkmeans import FastKMeans

    n, dim = sample.shape
    if n < num_partitions:
        raise ValueError(f"k-means needs at least as many sample embeddings ({n:,}) as centroids ({num_partitions:,})")
    logger.info("Clustering %s embeddings into %s centroids (%d iterations)", f"{n:,}", f"{num_partitions:,}", niters)
    kmeans = FastKMeans(d=dim, k=num_partitions, niter=niters, gpu=device.type == "cuda", seed=seed,
                        max_points_per_centroid=1 << 30, verbose=False,
                        **({"device": device} if device.type == "cuda" else CPU_CHUNKS))
    points = sample.float().cpu().numpy()
    del sample  # the caller's fp16 copy may go; k-means works on the fp32 one
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # fastkmeans reseeds the global RNGs; leave the caller's untouched
        kmeans.train(points)
    np.random.set_state(numpy_state)
    centroids = torch.from_numpy(kmeans.centroids).float()  # (C, d)
    return F.normalize(centroids, dim=-1).half()


SCORE_BLOCK = 1 << 24  # centroid scores held at once by nearest_centroids: 2**24 fp32 = 64 MiB, whatever C is


def nearest_centroids(embeddings: Tensor, centroids: Tensor, batch: int | None = None) -> Tensor:
    """Code of each embedding: argmax of centroid dot products, in batches of `batch` rows (default: as many as
    keep batch x C fp32 scores within SCORE_BLOCK, so memory does not grow with the number of centroids).

    Shapes: embeddings (n, d), centroids (C, d) -> (n,) int32.
    """
    batch = batch or max(1, SCORE_BLOCK // centroids.size(0))
    C = centroids.float()
    codes = torch.empty(embeddings.size(0), dtype=torch.int32, device=embeddings.device)
    for start in range(0, embeddings.size(0), batch):
        block = embeddings[start:start + batch].to(C.device).float()  # (b, d)
        codes[start:start + batch] = (block @ C.T).argmax(dim=1).to(torch.int32)  # (b, C) -> (b,)
    return codes
