"""The indexing plan: chunking and the passage sample (the reference's formulas). How many centroids, and how many
embeddings fit them, is the codec's recipe (colbert.index.codec)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from colbert.index.codec import (  # noqa: F401  (the codec's sample sizes, re-exported for the old import path)
    HELDOUT_FRACTION, HELDOUT_MAX, KMEANS_MAX_POINTS, KMEANS_MIN_POINTS, KMEANS_POINTS_PER_CENTROID, SAMPLE_SEED,
    kmeans_sample_size, num_partitions_for)

TYPICAL_DOCLEN = 120  # the reference's doclen guess for sampling, independent of doc_maxlen
MAX_CHUNK_PASSAGES = 25_000  # the reference's chunk size cap
CHUNK_EMBEDDINGS_BUDGET = 1 << 20  # token embeddings encoded per chunk: 2**20 x 128 dims x fp16 = 256 MiB


@dataclass(frozen=True)
class Plan:
    """How an index is cut into chunks, and which passages feed k-means (`sampled_pids`, ascending)."""

    num_passages: int
    chunksize: int
    sampled_pids: tuple[int, ...]

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_passages / self.chunksize)

    def chunk_range(self, chunk_idx: int) -> tuple[int, int]:
        """[start, end) pids of a chunk."""
        start = chunk_idx * self.chunksize
        return start, min(start + self.chunksize, self.num_passages)


def make_plan(num_passages: int, nranks: int, doc_maxlen: int, seed: int = SAMPLE_SEED) -> Plan:
    """The reference's chunk size (min(25,000, 1 + N // nranks)), also capped so one chunk's embeddings fit the
    memory budget, and its passage sample (min(1 + 16 * sqrt(120 * N), N) passages).

    Example:
        >>> plan = make_plan(1000, nranks=1, doc_maxlen=180)
        >>> plan.chunksize, plan.num_chunks, len(plan.sampled_pids)
        (1000, 1, 1000)
    """
    if num_passages <= 0:
        raise ValueError("Cannot plan an index of an empty collection")
    chunksize = min(MAX_CHUNK_PASSAGES, 1 + num_passages // nranks, max(1, CHUNK_EMBEDDINGS_BUDGET // doc_maxlen))
    num_sampled = min(1 + int(16 * math.sqrt(TYPICAL_DOCLEN * num_passages)), num_passages)
    sampled = random.Random(seed).sample(range(num_passages), num_sampled)
    return Plan(num_passages=num_passages, chunksize=chunksize, sampled_pids=tuple(sorted(sampled)))
