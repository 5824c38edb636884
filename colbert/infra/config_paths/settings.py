"""The reference's `colbert.infra.config.settings`.

The reference assembles ColBERTConfig from eight settings dataclasses; here it is one flat dataclass, so each
name is ColBERTConfig itself (`RunSettings(nranks=2)` makes a ColBERTConfig with nranks=2; docs/compat.md).
"""

from colbert.infra.config import ColBERTConfig

RunSettings = TokenizerSettings = ResourceSettings = DocSettings = QuerySettings = ColBERTConfig
TrainingSettings = IndexingSettings = SearchSettings = ColBERTConfig

__all__ = ["RunSettings", "TokenizerSettings", "ResourceSettings", "DocSettings", "QuerySettings",
           "TrainingSettings", "IndexingSettings", "SearchSettings"]
