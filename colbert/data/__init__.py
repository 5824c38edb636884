"""Collection, Queries, Ranking, Examples: load, iterate in fixed chunks, save; string or int ids."""

from __future__ import annotations

from colbert.data.collection import Collection
from colbert.data.examples import Examples
from colbert.data.queries import Queries
from colbert.data.ranking import Ranking

__all__ = ["Collection", "Examples", "Queries", "Ranking"]
