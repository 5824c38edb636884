"""The reference's `colbert.search.index_storage`: IndexScorer, the ranker a Searcher holds (`searcher.ranker`).

IndexScorer(index_path, use_gpu, load_index_with_mmap) opens an index as colbert.search.plaid.SearchIndex does
(it is one); ranking is colbert.search.plaid's.
"""

from __future__ import annotations

import os

import torch

from colbert.search.index import LoadedIndex
from colbert.search.plaid import SearchIndex

__all__ = ["IndexScorer"]


class IndexScorer(SearchIndex):
    """A SearchIndex opened from a folder: on the GPU when use_gpu and one is available (then read into memory)."""

    def __init__(self, index_path: str | os.PathLike, use_gpu: bool = True, load_index_with_mmap: bool = False):
        device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        mmap = load_index_with_mmap and device.type == "cpu"
        opened = SearchIndex.from_loaded(LoadedIndex.open(index_path, mmap=mmap), device)
        super().__init__(**{name: getattr(opened, name) for name in SearchIndex.__dataclass_fields__})
