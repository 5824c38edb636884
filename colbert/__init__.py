"""colbert: ColBERT late-interaction retrieval, compatible with colbert-ai checkpoints and indexes.

Public API (the reference's names): Indexer, Searcher, Trainer, IndexUpdater, Checkpoint, ColBERTConfig, Run,
RunConfig. Importing colbert configures no logging, sets no environment variable, queries no GPU and compiles nothing.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from colbert.infra import ColBERTConfig, Run, RunConfig

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.3.0"

_LAZY = {
    "Checkpoint": "colbert.modeling.checkpoint",
    "Indexer": "colbert.indexer",
    "Searcher": "colbert.searcher",
    "Trainer": "colbert.trainer",
    "IndexUpdater": "colbert.index_updater",
    "verify_index": "colbert.index_updater",
    "rerank": "colbert.modeling.checkpoint",
    "new_checkpoint": "colbert.modeling.colbert",
}

__all__ = ["ColBERTConfig", "Run", "RunConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the heavy facades (transformers, the index code) on first use, not at `import colbert`."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'colbert' has no attribute '{name}'")
