"""Token pooling: fewer vectors per document by averaging clusters of similar token vectors (the reference's
`pool_factor`).

A document of n vectors keeps max(1, n // pool_factor) of them: its first `protected_tokens` vectors are set aside,
the others are clustered hierarchically (Ward linkage, scipy) and each cluster is replaced by the mean of its vectors
(not renormalised, as in the reference); the protected vectors follow the cluster means. As in the reference, the
clustering runs on the rows of the documents' token-token cosine similarity matrix S = E E^T (the reference hands
1 - S to scipy as observations: the same Euclidean distances between rows). We compute those distances for many
documents at once with batched matrix products (torch) and give scipy only the condensed distances, so linkage does
O(n^2) work per document instead of the O(n^3) of computing the distances itself.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

CLUSTERING_MODES = ("hierarchical",)
POOL_BATCH_TOKENS = 1 << 14  # padded tokens pooled at once: their (n, n) float64 matrices are 16k x 300 x 8 B = 38 MiB at n=300


def check_pooling(pool_factor: int, protected_tokens: int, clustering_mode: str) -> None:
    """Raise ValueError on settings pooling cannot use, ImportError without scipy (before any work)."""
    if isinstance(pool_factor, bool) or not isinstance(pool_factor, int) or pool_factor < 1:
        raise ValueError(f"pool_factor must be an integer >= 1 (1: no pooling), got {pool_factor!r}")
    if isinstance(protected_tokens, bool) or not isinstance(protected_tokens, int) or protected_tokens < 0:
        raise ValueError(f"protected_tokens must be an integer >= 0, got {protected_tokens!r}")
    if clustering_mode not in CLUSTERING_MODES:
        raise ValueError(f"clustering_mode must be one of {CLUSTERING_MODES}, got {clustering_mode!r}")
    if pool_factor > 1 and importlib.util.find_spec("scipy") is None:
        raise ImportError("Token pooling (pool_factor > 1) clusters with scipy, which is not installed: "
                          "pip install 'colbert[pooling]' (or pip install scipy)")


def pooled_length(doclen: int, pool_factor: int, protected_tokens: int) -> int:
    """Vectors a document of `doclen` vectors keeps.

    >>> [pooled_length(n, 2, 0) for n in (1, 2, 3, 10)], pooled_length(10, 3, 2)
    ([1, 1, 1, 5], 5)
    """
    protected = min(protected_tokens, doclen)
    clusters = max(1, doclen // pool_factor)  # the reference counts the protected tokens in n
    return min(clusters, doclen - protected) + protected


def row_distances(E: Tensor) -> Tensor:
    """Euclidean distances between the rows of each document's similarity matrix S = E E^T.

    Shapes: E (B, n, d) zero-padded -> (B, n, n), in E's dtype; entries past a document's length are meaningless.
    """
    S = torch.bmm(E, E.transpose(1, 2))  # (B, n, n); padded rows are zero, so they add nothing to products
    G = torch.bmm(S, S.transpose(1, 2))  # (B, n, n) Gram matrix of the rows of S
    sq = G.diagonal(dim1=1, dim2=2)  # (B, n)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2 * G).clamp_(min=0)  # (B, n, n)
    return d2.sqrt_()


def _cluster_labels(dist: np.ndarray, clusters: int) -> np.ndarray:
    """Labels 1..clusters of Ward clusters of n points, from their full (n, n) distance matrix."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    condensed = squareform(dist, checks=False)
    Z = linkage(condensed, method="ward")
    return fcluster(Z, t=clusters, criterion="maxclust")


def pool_documents(embeddings: Tensor, doclens: Sequence[int], pool_factor: int,
                   protected_tokens: int = 0) -> tuple[Tensor, list[int]]:
    """Pool each document's vectors (see the module docstring).

    Args:
        embeddings: the documents' vectors laid end to end.
        doclens: vectors per document.
        pool_factor: the reduction ratio (1 returns the input unchanged).
        protected_tokens: leading vectors of each document kept as they are.

    Returns:
        (pooled vectors end to end, in the input's dtype and device; the new doclens).

    Shapes: embeddings (sum(doclens), d) -> (sum(new doclens), d).
    """
    doclens = [int(n) for n in doclens]
    if pool_factor == 1 or not doclens:
        return embeddings, doclens
    d = embeddings.size(1)
    work = embeddings.detach().to("cpu", torch.float32)
    docs = list(work.split(doclens))
    out: list[Tensor] = [work.new_empty(0, d)] * len(docs)
    new_lens = [0] * len(docs)
    order = sorted(range(len(docs)), key=lambda i: doclens[i])  # batches of similar length pad little
    batch: list[int] = []
    for i in order + [-1]:  # -1 flushes the last batch
        if batch and (i < 0 or (len(batch) + 1) * doclens[i] > POOL_BATCH_TOKENS):
            _pool_batch([docs[j] for j in batch], batch, pool_factor, protected_tokens, out, new_lens)
            batch = []
        batch.append(i)
    pooled = torch.cat(out) if out else work.new_empty(0, d)
    return pooled.to(embeddings.device, embeddings.dtype), new_lens


def _pool_batch(docs: list[Tensor], positions: list[int], pool_factor: int, protected_tokens: int,
                out: list[Tensor], new_lens: list[int]) -> None:
    """Pool a batch of documents into out[position], new_lens[position]."""
    bodies = [doc[protected_tokens:] for doc in docs]
    to_cluster = [j for j, (doc, body) in enumerate(zip(docs, bodies))
                  if body.size(0) > max(1, doc.size(0) // pool_factor)]
    dist = None
    if to_cluster:
        n = max(bodies[j].size(0) for j in to_cluster)
        E = torch.zeros(len(to_cluster), n, docs[0].size(1), dtype=torch.float64)  # (B, n, d)
        for row, j in enumerate(to_cluster):
            E[row, :bodies[j].size(0)] = bodies[j]
        dist = row_distances(E).numpy()  # (B, n, n)
    rows = {j: row for row, j in enumerate(to_cluster)}
    for j, (doc, body) in enumerate(zip(docs, bodies)):
        protected = doc[:protected_tokens]
        if j in rows:
            m = body.size(0)
            labels = _cluster_labels(dist[rows[j], :m, :m], max(1, doc.size(0) // pool_factor))
            means = torch.from_numpy(_cluster_means(body.numpy(), labels))
            pooled = torch.cat([means, protected])
        else:  # nothing to merge: n // pool_factor clusters of at most as many vectors
            pooled = torch.cat([body, protected])
        out[positions[j]] = pooled
        new_lens[positions[j]] = pooled.size(0)


def _cluster_means(body: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean vector of each non-empty cluster, in label order. Shapes: body (m, d), labels (m,) -> (c, d).

    >>> _cluster_means(np.array([[1., 0.], [3., 2.], [5., 5.]]), np.array([2, 1, 2]))
    array([[3. , 2. ],
           [3. , 2.5]])
    """
    # numpy's reduceat: per-document tensors are small, and torch's threaded small ops cost more than they do
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])  # (c,) first row of each cluster
    sums = np.add.reduceat(body[order], starts, axis=0)  # (c, d)
    counts = np.diff(np.r_[starts, len(labels)])  # (c,)
    return sums / counts[:, None].astype(body.dtype)
