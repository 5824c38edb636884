"""The reference's `colbert.search.index_storage`: IndexScorer, the ranker a Searcher holds (`searcher.ranker`).

IndexScorer(index_path, use_gpu, load_index_with_mmap) opens an index as a Searcher does: a LoadedIndex (it is one)
on the search device; ranking is colbert.search.plaid's.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from colbert.index.loaded import LoadedIndex

__all__ = ["IndexScorer"]


class IndexScorer(LoadedIndex):
    """A LoadedIndex opened from a folder: on the GPU when use_gpu and one is available (then read into memory)."""

    def __init__(self, index_path: str | os.PathLike, use_gpu: bool = True, load_index_with_mmap: bool = False):
        device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        mmap = load_index_with_mmap and device.type == "cpu"
        opened = LoadedIndex.open(index_path, mmap=mmap).to(device)
        super().__init__(**{f.name: getattr(opened, f.name) for f in dataclasses.fields(LoadedIndex)})
