"""Checks of the arguments of public entry points, shared by the facades: each raises TypeError (wrong type) or
ValueError (wrong value) naming the argument, the value and what is allowed, before any work is done."""

from __future__ import annotations

import numbers
import os
from typing import Any


def check_int(value: Any, name: str, low: int = 1) -> int:
    """`value` as an int >= `low` (bools refused).

    >>> check_int(3, "k")
    3
    """
    allowed = "a positive integer" if low == 1 else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {allowed}, got {value!r:.80} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_optional_int(value: Any, name: str, low: int = 1) -> int | None:
    return None if value is None else check_int(value, name, low)


def check_verbose(verbose: Any) -> int:
    """verbose: an int from 0 (silent) to 3 (debug); a bool is 0 or 1, as in the reference, where RAGatouille passes
    `verbose=self.verbose != 0` to Indexer and Searcher.

    >>> check_verbose(True), check_verbose(2)
    (1, 2)
    """
    if isinstance(verbose, bool):
        return int(verbose)
    verbose = check_int(verbose, "verbose", low=0)
    if verbose > 3:
        raise ValueError(f"verbose must be 0 (silent), 1 (bars), 2 (config summary) or 3 (debug), got {verbose}")
    return verbose


def check_path(value: Any, name: str, allow_empty: bool = False) -> str:
    """A str or os.PathLike argument, as a str; empty strings refused unless `allow_empty`."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or a path, got {value!r:.80} ({type(value).__name__})")
    if not value.strip() and not (allow_empty and value == ""):
        raise ValueError(f"{name} must not be empty")
    return value
