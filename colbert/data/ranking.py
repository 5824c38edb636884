"""Ranking: the result of Searcher.search_all, {qid: [(pid, rank, score), ...]}, saved as TSV."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, ItemsView, Iterator, Mapping, Sequence

from colbert.data.collection import Castable, DocId, check_id, check_tsv_field, parse_ids, write_lines
from colbert.data.readers import read_tsv

logger = logging.getLogger(__name__)

_INT = re.compile(r"^-?[0-9]+$")


def _number(text: str, where: str) -> int | float:
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def _plain(x: Any) -> Any:
    """A Python scalar for 0-dim tensors and numpy scalars; bools as ints (as the reference writes them)."""
    x = x.item() if hasattr(x, "item") and not isinstance(x, (str, int, float)) else x
    return int(x) if isinstance(x, bool) else x


class Ranking(Castable):
    """Ranked passages per query: `data` is {qid: [(pid, rank, score), ...]} (rank from 1, best first).

    Build one from that dict, from a flat list [(qid, pid, rank, score), ...], or from a TSV file
    (`Ranking.load(path)`) of `qid<TAB>pid<TAB>rank[<TAB>score...]` lines. In files, qids and pids are ints
    when every value of their column is a plain integer, else strings (the rule of colbert.data.collection), rank
    is an int and further columns are ints or floats; so a Ranking saved and loaded back is equal to itself when
    its ids are all ints or are not all integer-like strings.

    Example:
        >>> r = Ranking(data={"q1": [(7, 1, 12.5), (3, 2, 11.0)]})
        >>> r.tolist()
        [('q1', 7, 1, 12.5), ('q1', 3, 2, 11.0)]
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        data: Mapping[DocId, Sequence[Sequence[Any]]] | Sequence[Sequence[Any]] | None = None,
        provenance: Any = None,
        run_dir: str | os.PathLike | None = None,
    ):
        if (path is None) == (data is None):
            raise TypeError("Ranking needs exactly one of path= (a TSV file) or data= (a dict or a flat list)")
        self.path = None if path is None else str(path)
        self._provenance = provenance if provenance is not None else self.path
        self.run_dir = None if run_dir is None else str(run_dir)  # where save() puts relative paths (else cwd)
        if path is not None:
            self.data = self._load_tsv(Path(path))
        elif isinstance(data, Mapping):
            self.data = {qid: [self._row(row, f"the ranking of query {qid!r}") for row in rows]
                         for qid, rows in data.items()}
        elif isinstance(data, (list, tuple)):
            self.data = self._group(data)
        else:
            raise TypeError(f"Ranking data must be a dict {{qid: [(pid, rank, score), ...]}} or a flat list, "
                            f"not {type(data).__name__}")
        for qid in self.data:
            check_id(qid, "a qid")

    @staticmethod
    def _row(row: Sequence[Any], what: str) -> tuple | list:
        """The row with numpy/torch scalars made plain; a list stays a list (as the reference keeps rows)."""
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) < 1:
            raise TypeError(f"{what} holds {row!r}; each entry must be a tuple (pid, rank, score)")
        plain = [_plain(x) for x in row]
        return plain if isinstance(row, list) else tuple(plain)

    def _group(self, flat: Sequence[Sequence[Any]]) -> dict[DocId, list[tuple]]:
        grouped: dict[DocId, list[tuple]] = {}
        for i, row in enumerate(flat):
            row = self._row(row, f"entry {i} of the ranking")
            if len(row) < 2:
                raise TypeError(f"entry {i} of the ranking is {row!r}; expected (qid, pid, rank, score)")
            grouped.setdefault(row[0], []).append(row[1:])  # a list row stays a list
        return grouped

    @staticmethod
    def _load_tsv(path: Path) -> dict[DocId, list[tuple]]:
        qids, pids, rest = [], [], []
        for lineno, fields in read_tsv(path, "qid<TAB>pid<TAB>rank[<TAB>score]", 3):
            qids.append(fields[0])
            pids.append(fields[1])
            rest.append(tuple(_number(x, f"{path}:{lineno}") for x in fields[2:]))
            if not isinstance(rest[-1][0], int):
                raise ValueError(f"{path}:{lineno}: rank {fields[2]!r} is not an integer")
        data: dict[DocId, list[tuple]] = {}
        for qid, pid, values in zip(parse_ids(qids), parse_ids(pids), rest):
            data.setdefault(qid, []).append([pid, *values])  # lists, as the reference reads them
        return data

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ranking:
        """Read a ranking TSV written by `save` (or by the reference)."""
        return cls(path=path)

    def todict(self) -> dict[DocId, list[tuple]]:
        """{qid: [(pid, rank, score), ...]} (a copy of the outer dict)."""
        return dict(self.data)

    def tolist(self) -> list[tuple | list]:
        """The flat ranking: [(qid, pid, rank, score), ...], queries in order (lists for rows read from a file)."""
        return [[qid, *row] if isinstance(row, list) else (qid, *row) for qid, rows in self.data.items()
                for row in rows]

    @property
    def flat_ranking(self) -> list[tuple | list]:
        """The reference's attribute: the same as tolist()."""
        return self.tolist()

    def flatten(self) -> list[tuple]:
        """Same as tolist()."""
        return self.tolist()

    def items(self) -> ItemsView[DocId, list[tuple]]:
        return self.data.items()

    def __iter__(self) -> Iterator[tuple[DocId, list[tuple]]]:
        return iter(self.data.items())

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, qid: DocId) -> list[tuple]:
        return self.data[qid]

    def provenance(self) -> Any:
        return self._provenance

    def toDict(self) -> dict:  # noqa: N802 (the reference's name)
        return {"provenance": self.provenance()}

    def save(self, new_path: str | os.PathLike) -> str:
        """Write `qid<TAB>pid<TAB>rank<TAB>score` lines atomically (floats as repr, so they read back exactly), and
        beside them `<path>.meta` (JSON: provenance, and when and by which command it was written), as the
        reference. A relative path goes under `run_dir` (the Run's folder, root/experiment/<script>/name, for a
        ranking from Searcher.search_all), else under the working directory; the folder is created.

        Returns:
            The absolute path written.
        """
        path = Path(self.run_dir or ".", new_path).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ("\t".join(check_tsv_field(x, "a ranking field") for x in row) + "\n" for row in self.tolist())
        write_lines(path, lines)
        meta = {"metadata": {"time": datetime.datetime.now().isoformat(timespec="seconds"), "cwd": os.getcwd(),
                             "argv": list(sys.argv)}, "provenance": self.provenance()}
        write_lines(Path(f"{path}.meta"), [json.dumps(meta, indent=4, default=str) + "\n"])
        logger.info("Saved the ranking of %d queries to %s", len(self.data), path)
        return str(path)

    def __repr__(self) -> str:
        return f"Ranking({len(self):,} queries, {sum(map(len, self.data.values())):,} entries)"
