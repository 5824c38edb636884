"""The reference's `colbert.infra.provenance.Provenance`: where an object (a Ranking, ...) came from."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["Provenance"]


class Provenance:
    """Records the call stack at creation (`stacktrace`); attributes set on it are exported by `toDict()`."""

    def __init__(self) -> None:
        self.initial_stacktrace = self.stacktrace()

    def stacktrace(self) -> list[str]:
        """The callers' `file:line:function` frames, outermost first, this class's own frames left out."""
        frames = inspect.stack()[1:]
        return [f"{f.filename}:{f.lineno}:{f.function}" for f in reversed(frames) if f.filename != __file__]

    def toDict(self) -> dict[str, Any]:
        return {**self.__dict__, "stacktrace": self.stacktrace()}
