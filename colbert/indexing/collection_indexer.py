"""The reference's `colbert.indexing.collection_indexer`: `CollectionIndexer` and its `_train_kmeans` hook.

Code written for colbert-ai replaces `CollectionIndexer._train_kmeans` to change how centroids are fitted
(RAGatouille assigns a PyTorch k-means there, and assigns back a deep copy of the original). The Indexer honours
that: when the attribute is no longer the function defined here, the build calls the replacement as the
reference does, `_train_kmeans(self, sample, shared_lists)`, with `self` a CollectionIndexer whose `config`,
`num_partitions`, `use_gpu`, `rank` and `nranks` are set, and `sample` the fp16 k-means sample (n, dim) on the
CPU; it returns the centroids (num_partitions, dim), which are L2-normalised and stored as fp16. The build itself
is `colbert.indexing.build_index`; nothing else here is a second copy of it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from colbert.indexing.kmeans import train_centroids
from colbert.infra.config import ColBERTConfig

logger = logging.getLogger(__name__)

__all__ = ["CollectionIndexer", "encode", "compute_faiss_kmeans", "kmeans_override"]


def compute_faiss_kmeans(dim: int, num_partitions: int, kmeans_niters: int, shared_lists: list,
                         return_value_queue: Any = None) -> Tensor:
    """The reference's k-means entry point (it ran faiss): centroids of `shared_lists[0][0]`, our k-means."""
    sample = shared_lists[0][0]
    centroids = train_centroids(sample.half(), num_partitions, kmeans_niters, torch.device("cpu"))
    if return_value_queue is not None:
        return_value_queue.put(centroids)
    return centroids


class CollectionIndexer:
    """The reference's per-rank indexer, kept for its `_train_kmeans` hook and for scripts that construct it.

    Args:
        config: the resolved ColBERTConfig (checkpoint, index_name, nbits, ...).
        collection: what to index (anything `Indexer.index` takes).
        verbose: as the Indexer's.
    """

    def __init__(self, config: ColBERTConfig, collection: Any = None, verbose: int = 2) -> None:
        self.config = config
        self.collection = collection
        self.verbose = verbose
        self.rank, self.nranks = config.rank, config.nranks
        self.use_gpu = config.gpus != 0 and torch.cuda.is_available()
        self.num_partitions: Optional[int] = None

    def run(self, shared_lists: Any = None) -> str:
        """Build the index `config.index_name` of the collection with the Indexer in `config.index_path_` (this
        config's folder, as the reference's CollectionIndexer writes there); returns the folder."""
        from colbert.indexer import Indexer

        config = self.config.replace(index_path=self.config.index_path_) if self.config.index_path_ else self.config
        indexer = Indexer(config.checkpoint, config=config, verbose=self.verbose)
        return indexer.index(self.config.index_name, self.collection, overwrite=True)

    def _train_kmeans(self, sample: Tensor, shared_lists: Any) -> Tensor:
        """Centroids of the sample with this library's k-means (the default; callers may replace it)."""
        device = torch.device("cuda") if self.use_gpu else torch.device("cpu")
        return train_centroids(sample.half(), self.num_partitions, self.config.kmeans_niters, device)


_DEFAULT_TRAIN_KMEANS = CollectionIndexer._train_kmeans


def encode(config: ColBERTConfig, collection: Any, shared_lists: Any = None, shared_queues: Any = None,
           verbose: int = 3) -> str:
    """The reference's per-rank launch target: build the index (one process here)."""
    return CollectionIndexer(config=config, collection=collection, verbose=verbose).run(shared_lists)


def kmeans_override(config: ColBERTConfig) -> Optional[Callable[[Tensor, int], Tensor]]:
    """The replacement of `CollectionIndexer._train_kmeans`, as a function (sample, num_partitions) -> centroids
    for build_index; None while the default is in place. Read once, by the Indexer facade."""
    replaced = CollectionIndexer.__dict__.get("_train_kmeans")
    if replaced is _DEFAULT_TRAIN_KMEANS:
        return None
    logger.info("CollectionIndexer._train_kmeans was replaced (%s); the build fits centroids with it",
                getattr(replaced, "__qualname__", replaced))
    return _Override(config, replaced)


class _Override:
    """Calls a replaced `_train_kmeans` as the reference does; picklable when the replacement is."""

    def __init__(self, config: ColBERTConfig, train: Any) -> None:
        self.config, self.train = config, train

    def __call__(self, sample: Tensor, num_partitions: int) -> Tensor:
        indexer = CollectionIndexer(self.config)
        indexer.num_partitions = num_partitions
        train = self.train.__get__(indexer) if hasattr(self.train, "__get__") else self.train
        return train(sample, [[sample], None, None])
