"""evaluate(): search every judged query with a Searcher and score the run with ir-measures."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional

from colbert.evaluation.datasets import Qrels
from colbert.evaluation.measures import DEFAULT_MEASURES, score_run

logger = logging.getLogger(__name__)


def evaluate(searcher: Any, queries: Any, qrels: Qrels, k: int = 100, measures: Iterable[str] = DEFAULT_MEASURES,
             per_query: bool = False, run_path: Optional[str] = None, **search_kwargs: Any) -> dict:
    """Search `queries` ({qid: text}, Queries, a TSV path) for their top k and score the run against `qrels`.

    Args:
        searcher: a Searcher (anything with `search_all(queries, k=...)` returning a Ranking).
        k: documents retrieved per query; at least the deepest cutoff measured (R@100 needs k >= 100).
        run_path: also save the run there in TREC format.
        search_kwargs: passed to `search_all` (e.g. exact=True).

    Returns:
        score_run's result, plus "k".
    """
    measures = list(measures)
    deepest = max((_cutoff(name) for name in measures), default=0)
    if deepest > k:
        logger.warning("k=%d is below the cutoff of a measure (%d): documents past rank %d count as not retrieved",
                       k, deepest, k)
    ranking = searcher.search_all(queries, k=k, **search_kwargs)
    if run_path is not None:
        from colbert.evaluation.measures import write_trec_run

        write_trec_run(ranking, run_path)
    result = score_run(ranking, qrels, measures, per_query=per_query)
    result["k"] = k
    return result


def _cutoff(name: str) -> int:
    _, _, after = name.partition("@")
    return int(after) if after.isdigit() else 0
