"""Examples: training tuples read from JSONL, one query per line with its passages."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from colbert.data.collection import check_id, write_lines
from colbert.data.readers import read_jsonl

logger = logging.getLogger(__name__)


def check_example(example: Any, where: str, nway: int | None = None) -> list:
    """Check one example and cut it to `nway` passages; raise ValueError naming `where` otherwise.

    An example is `[qid, pid, pid, ...]` (the first passage positive, the rest negatives) or, for distillation,
    `[qid, [pid, score], [pid, score], ...]`; ids are ints or strings, scores numbers.

    >>> check_example([7, 1, 2, 3], "line 1", nway=2)
    [7, 1, 2]
    """
    if not isinstance(example, list) or len(example) < 2:
        raise ValueError(f"{where}: expected [qid, passage, passage, ...], got {example!r:.80}")
    _check_id(example[0], where, "qid")
    passages = example[1:]
    scored = isinstance(passages[0], list)
    for p in passages:
        if scored != isinstance(p, list):
            raise ValueError(f"{where}: mixes plain pids and [pid, score] pairs")
        if scored:
            if len(p) != 2 or isinstance(p[1], bool) or not isinstance(p[1], (int, float)):
                raise ValueError(f"{where}: expected [pid, score] pairs, got {p!r}")
            _check_id(p[0], where, "pid")
        else:
            _check_id(p, where, "pid")
    if nway is not None:
        if len(passages) < nway:
            raise ValueError(f"{where}: has {len(passages)} passages but nway={nway} were asked for")
        example = example[: nway + 1]
    return example


def _check_id(value: Any, where: str, what: str) -> None:
    try:
        check_id(value, f"the {what}")
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


class Examples:
    """Training examples, each `[qid, pid+, pid-, ...]` or `[qid, [pid, score], ...]`, from a JSONL file or a list.

    `nway` keeps the first nway passages of each example (an example with fewer raises ValueError).

    Example:
        >>> ex = Examples(data=[[0, 5, 9, 2], ["q1", ["d3", 0.9], ["d4", 0.1]]], nway=2)
        >>> len(ex), ex.tolist()[0]
        (2, [0, 5, 9])
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        data: Sequence[list] | None = None,
        nway: int | None = None,
        provenance: Any = None,
    ):
        if (path is None) == (data is None):
            raise TypeError("Examples needs exactly one of path= (a JSONL file) or data= (a list of examples)")
        if nway is not None and (isinstance(nway, bool) or not isinstance(nway, int) or nway < 1):
            raise ValueError(f"nway must be a positive int or None, got {nway!r}")
        self.path = None if path is None else str(path)
        self.nway = nway
        self._provenance = provenance if provenance is not None else self.path
        if path is not None:
            self.data = self._load_file(Path(path))
        else:
            self.data = [check_example(list(e) if isinstance(e, tuple) else e, f"example {i}", nway)
                         for i, e in enumerate(data)]
        if not self.data:
            raise ValueError(f"no training examples in {self.path or 'the data given'}")

    def _load_file(self, path: Path) -> list[list]:
        return [check_example(example, f"{path}:{lineno}", self.nway) for lineno, example in read_jsonl(path)]

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[list]:
        return iter(self.data)

    def __getitem__(self, idx: int) -> list:
        return self.data[idx]

    def tolist(self, rank: int | None = None, nranks: int | None = None) -> list[list]:
        """All examples, or with rank/nranks every nranks-th example starting at `rank`."""
        if rank is None and nranks is None:
            return list(self.data)
        if rank is None or nranks is None or not 0 <= rank < nranks:
            raise ValueError(f"give both rank and nranks with 0 <= rank < nranks, got rank={rank}, nranks={nranks}")
        return self.data[rank::nranks]

    def provenance(self) -> Any:
        return self._provenance

    def toDict(self) -> Any:  # noqa: N802 (the reference's name)
        return self.provenance()

    def save(self, new_path: str | os.PathLike) -> str:
        """Write one JSON list per line, atomically; return the path."""
        write_lines(new_path, (json.dumps(e) + "\n" for e in self.data))
        return str(new_path)

    @classmethod
    def cast(cls, obj: str | os.PathLike | Sequence[list] | Examples, nway: int | None = None) -> Examples:
        """Examples from a path, a list, or Examples (returned as is; then nway must be None)."""
        if isinstance(obj, cls):
            if nway is not None:
                raise ValueError("cannot apply nway to existing Examples; build them from the file again")
            return obj
        if isinstance(obj, (str, os.PathLike)):
            return cls(path=obj, nway=nway)
        if isinstance(obj, list):
            return cls(data=obj, nway=nway)
        raise TypeError(f"cannot make Examples from a {type(obj).__name__}; give a JSONL path or a list")

    def __repr__(self) -> str:
        return f"Examples({len(self):,} examples, nway={self.nway}, path={self.path!r})"
