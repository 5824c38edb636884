"""The reference's `colbert.search.index_loader`: IndexLoader(index_path), the parts of an index as attributes.

Reading and checking is colbert.index.loaded.LoadedIndex's; this exposes the result under the reference's names
(codec, ivf, doclens, embeddings, metadata, num_chunks, num_embeddings).
"""

from __future__ import annotations

import os
from typing import Any

from colbert.index.loaded import LoadedIndex
from colbert.index.strided_tensor import StridedTensor

__all__ = ["IndexLoader"]


class IndexLoader:
    """Args: index_path; use_gpu (ignored: everything is read to the CPU); load_index_with_mmap."""

    def __init__(self, index_path: str | os.PathLike, use_gpu: bool = True, load_index_with_mmap: bool = False):
        self.index_path, self.use_gpu, self.load_index_with_mmap = str(index_path), use_gpu, load_index_with_mmap
        self.loaded = loaded = LoadedIndex.open(index_path, mmap=load_index_with_mmap)
        self.codec = loaded.codec
        self.ivf = StridedTensor(loaded.ivf, loaded.ivf_lengths, use_gpu=False)
        self.doclens = loaded.doclens
        self.embeddings = loaded.embeddings

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
