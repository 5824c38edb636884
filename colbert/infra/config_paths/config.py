"""The reference's `colbert.infra.config.config`."""

from colbert.infra.config import ColBERTConfig, RunConfig

__all__ = ["ColBERTConfig", "RunConfig"]
