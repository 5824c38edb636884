"""The reference's `colbert.infra.config.core_config`: DefaultVal (a default marked as such) and CoreConfig.

Here defaults are plain dataclass defaults and `ColBERTConfig.assigned` records what was set; DefaultVal is kept
for code that builds its own dataclasses with it, CoreConfig is ColBERTConfig.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colbert.infra.config import ColBERTConfig as CoreConfig

__all__ = ["DefaultVal", "CoreConfig"]


@dataclass
class DefaultVal:
    val: Any

    def __hash__(self) -> int:
        return hash(repr(self.val))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DefaultVal) and self.val == other.val
