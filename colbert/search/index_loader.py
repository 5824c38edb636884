"""The reference's `colbert.search.index_loader`: IndexLoader(index_path), the parts of an index as attributes.

Reading and checking is colbert.search.index.LoadedIndex's; this exposes the result under the reference's names
(codec, ivf, doclens, embeddings, metadata, num_chunks, num_embeddings).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from colbert.index.codec import ResidualCodec
from colbert.index.residual_embeddings import ResidualEmbeddings
from colbert.index.loaded import LoadedIndex
from colbert.index.strided_tensor import StridedTensor

__all__ = ["IndexLoader"]


class IndexLoader:
    """Args: index_path; use_gpu (ignored: everything is read to the CPU); load_index_with_mmap."""

    def __init__(self, index_path: str | os.PathLike, use_gpu: bool = True, load_index_with_mmap: bool = False):
        self.index_path, self.use_gpu, self.load_index_with_mmap = str(index_path), use_gpu, load_index_with_mmap
        self.loaded = loaded = LoadedIndex.open(index_path, mmap=load_index_with_mmap)
        self.codec = ResidualCodec(loaded.centroids, loaded.bucket_cutoffs, loaded.bucket_weights,
                                   loaded.avg_residual, nbits=loaded.nbits)
        self.ivf = StridedTensor(loaded.ivf, loaded.ivf_lengths, use_gpu=False)
        self.doclens = loaded.doclens
        residuals = loaded.residual_chunks
        self.embeddings = ResidualEmbeddings(loaded.codes, residuals[0] if len(residuals) == 1 else
                                             torch.cat(residuals))

    @property
    def metadata(self) -> dict:
        return self.loaded.metadata

    @property
    def config(self) -> Any:  # the reference raises NotImplementedError here; the index's ColBERTConfig is more useful
        return self.loaded.config

    @property
    def num_chunks(self) -> int:
        return int(self.loaded.metadata["num_chunks"])

    @property
    def num_embeddings(self) -> int:
        return self.loaded.num_embeddings
