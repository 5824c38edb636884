from colbert.infra.config import (BaseConfig, ColBERTConfig, DefaultVal, DocSettings, IndexingSettings, QuerySettings,
                                  ResourceSettings, RunConfig, RunSettings, SearchSettings, TokenizerSettings,
                                  TrainingSettings)
from colbert.infra.run import Run

__all__ = ["ColBERTConfig", "Run", "RunConfig", "BaseConfig", "DefaultVal", "RunSettings", "TokenizerSettings",
           "ResourceSettings", "DocSettings", "QuerySettings", "TrainingSettings", "IndexingSettings",
           "SearchSettings"]
