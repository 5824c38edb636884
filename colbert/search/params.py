"""PLAID search parameters: the reference's defaults by k, overridden by whatever the config sets.

`search_params(k, config)` is a pure function called on every search: it reads the config and never writes the
derived values back. (The reference's `Searcher.dense_search` writes them into its config on the first call, so a
Searcher first used with k=10 keeps k=10's settings for every later k; here each call gets the settings of its own k.)

| k           | ncells | centroid_score_threshold | ndocs           |
|-------------|--------|--------------------------|-----------------|
| k <= 10     | 1      | 0.5                      | 256             |
| k <= 100    | 2      | 0.45                     | 1024            |
| k > 100     | 4      | 0.4                      | max(4k, 4096)   |
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

from colbert.infra.config import ColBERTConfig

__all__ = ["SearchParams", "check_k", "scoring_at_least", "search_params"]


@dataclass(frozen=True)
class SearchParams:
    """The knobs of one PLAID search.

    Attributes:
        ncells: centroids probed per query vector (stage 1).
        centroid_score_threshold: centroids whose best score over the query vectors is below this are ignored by
            stage 2's approximate scores.
        ndocs: candidates kept after stage 2; stage 3 keeps `ndocs // 4` of them for full decompression (stage 4).
    """

    ncells: int
    centroid_score_threshold: float
    ndocs: int

    @property
    def nfinal(self) -> int:
        """Candidates scored with their decompressed embeddings (stage 4): `ndocs // 4`, as the reference."""
        return self.ndocs // 4


def check_k(k: Any) -> int:
    """Return `k` as an int, or raise if it is not a positive integer.

    >>> check_k(10)
    10
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be a positive int, got {type(k).__name__} {k!r}")
    if k <= 0:
        raise ValueError(f"k must be a positive int, got {k}")
    return int(k)


def _defaults(k: int) -> tuple[int, float, int]:
    if k <= 10:
        return 1, 0.5, 256
    if k <= 100:
        return 2, 0.45, 1024
    return 4, 0.4, max(4 * k, 4096)


def search_params(k: int, config: ColBERTConfig) -> SearchParams:
    """The PLAID settings for a search of depth `k`: the config's values where set, else the defaults for k.

    Args:
        k: how many results the search returns.
        config: `ncells`, `centroid_score_threshold` and `ndocs` are read; None means "the default for k".

    Returns:
        The settings for this call. The config is not modified.

    Raises:
        ValueError / TypeError: k is not a positive int, or a config value is out of range.

    Example:
        >>> search_params(10, ColBERTConfig())
        SearchParams(ncells=1, centroid_score_threshold=0.5, ndocs=256)
        >>> search_params(1000, ColBERTConfig(ncells=8))
        SearchParams(ncells=8, centroid_score_threshold=0.4, ndocs=4096)
    """
    k = check_k(k)
    ncells, threshold, ndocs = _defaults(k)
    ncells = ncells if config.ncells is None else config.ncells
    threshold = threshold if config.centroid_score_threshold is None else config.centroid_score_threshold
    ndocs = ndocs if config.ndocs is None else config.ndocs
    for name, value, lowest in (("ncells", ncells, 1), ("ndocs", ndocs, 4)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
            raise ValueError(f"ColBERTConfig.{name} must be an int >= {lowest} (or None for the default by k), "
                             f"got {value!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold):
        raise ValueError(f"ColBERTConfig.centroid_score_threshold must be a number (or None for the default by k), "
                         f"got {threshold!r}")
    return SearchParams(int(ncells), float(threshold), int(ndocs))


def scoring_at_least(params: SearchParams, n: int) -> SearchParams:
    """`params` with ndocs raised, if needed, so that stage 4 scores at least `n` documents (ndocs // 4 >= n).

    Diverse search (colbert.search.diversity) runs the settings of its own k this way, with enough documents scored
    exactly to choose from, rather than the larger ncells and ndocs of a search of depth n.

    >>> scoring_at_least(SearchParams(1, 0.5, 256), 100)
    SearchParams(ncells=1, centroid_score_threshold=0.5, ndocs=400)
    """
    return params if params.nfinal >= n else replace(params, ndocs=4 * n)
