"""The reference's `colbert.infra.config.base_config`: BaseConfig is ColBERTConfig here (one flat dataclass)."""

from colbert.infra.config import BaseConfig

__all__ = ["BaseConfig"]
