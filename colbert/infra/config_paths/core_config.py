"""The reference's `colbert.infra.config.core_config`: DefaultVal (a default marked as such) and CoreConfig.

Here defaults are plain dataclass defaults and `ColBERTConfig.assigned` records what was set; DefaultVal is kept
for code that builds its own dataclasses with it, CoreConfig is ColBERTConfig. Both are defined in
colbert/infra/config.py.
"""

from colbert.infra.config import CoreConfig, DefaultVal

__all__ = ["DefaultVal", "CoreConfig"]
