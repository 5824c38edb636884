"""The reference's `colbert.infra.config.settings`: its eight settings dataclasses, each ColBERTConfig here (one flat
dataclass; see colbert/infra/config.py, where they are defined once)."""

from colbert.infra.config import (DocSettings, IndexingSettings, QuerySettings, ResourceSettings, RunSettings,
                                  SearchSettings, TokenizerSettings, TrainingSettings)

__all__ = ["RunSettings", "TokenizerSettings", "ResourceSettings", "DocSettings", "QuerySettings",
           "TrainingSettings", "IndexingSettings", "SearchSettings"]
