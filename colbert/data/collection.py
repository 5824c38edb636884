"""Collection: the passages to index, in pid order, with the user's document ids when they are not 0..N-1.

File ids follow one rule everywhere in colbert.data: a column whose values are all plain non-negative integers
("0", "17", not "007" or "-1") is read as ints, any other column as strings. So SciFact's doc ids become ints and
"doc-17" stays a string, and a saved Ranking reads back with the same ids.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence, Union

from colbert.data.readers import STRIP, read_tsv
from colbert.utils.io import atomic_write

logger = logging.getLogger(__name__)

DocId = Union[int, str]
MAX_CHUNKSIZE = 25_000  # passages per chunk when indexing, as the reference
_PLAIN_INT = re.compile(r"^(0|[1-9][0-9]*)$")


def parse_ids(values: Sequence[str]) -> list[DocId]:
    """Ids read from a file: all ints when every value is a plain non-negative integer, else the strings.

    >>> parse_ids(["3", "10"]), parse_ids(["3", "007"])
    ([3, 10], ['3', '007'])
    """
    if all(_PLAIN_INT.match(v) for v in values):
        return [int(v) for v in values]
    return list(values)


def check_id(value: object, what: str) -> None:
    """Raise TypeError unless `value` can be an id (an int or a str, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{what} is {value!r} of type {type(value).__name__}; ids must be ints or strings")


def check_tsv_field(value: DocId, what: str) -> str:
    """str(value), refusing tabs and line breaks, which would break the TSV it is written to."""
    text = str(value)
    if any(c in text for c in "\t\n\r"):
        raise ValueError(f"{what} {text[:80]!r} contains a tab or a line break and cannot be written as TSV")
    return text


class Castable:
    """`cast(obj)`: an instance from a TSV path, a list/tuple or dict of data, or an instance (returned as is)."""

    def __init__(self, path: str | os.PathLike | None = None, data: object = None) -> None:
        raise NotImplementedError

    @classmethod
    def cast(cls, obj: object) -> "Castable":
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, (str, os.PathLike)):
            return cls(path=obj)
        if isinstance(obj, (list, tuple, Mapping)):
            return cls(data=obj)
        raise TypeError(f"cannot make {cls.__name__} from a {type(obj).__name__}; give a TSV path, a list or a dict")


class Collection(Castable):
    """The passages of a collection, in pid order (pid = position), and their ids.

    Build one from a TSV (`pid<TAB>passage[<TAB>title]`, read by the dialect of colbert.data.readers: BOM
    skipped, a header line skipped by its first field, more than three fields rejected; passages are stripped of
    line breaks and spaces at both ends, which changes no token), a
    list of texts (ids 0..N-1), or a dict {id: text}. The reference requires
    pid == line number; here any ids are accepted and kept in `ids` (None when they are 0..N-1 in order). A third
    column is a title, giving the text "title | passage" as in the reference.

    Example:
        >>> c = Collection(data={"d1": "first passage", "d2": "second"})
        >>> len(c), c[1], c.ids
        (2, 'second', ['d1', 'd2'])
        >>> list(Collection(data=["a", "b", "c"]).enumerate_batches(rank=0, chunksize=2))
        [(0, 0, ['a', 'b']), (1, 2, ['c'])]
    """

    def __init__(self, path: str | os.PathLike | None = None, data: Sequence[str] | Mapping[DocId, str] | None = None):
        if (path is None) == (data is None):
            raise TypeError("Collection needs exactly one of path= (a TSV file) or data= (a list or dict of texts)")
        self.path = None if path is None else str(path)
        if path is not None:
            ids, texts = self._load_tsv(Path(path))
        elif isinstance(data, Mapping):
            ids, texts = list(data.keys()), list(data.values())
        elif isinstance(data, (list, tuple)):
            ids, texts = None, list(data)
        else:
            raise TypeError(f"Collection data must be a list of texts or a dict {{id: text}}, "
                            f"not {type(data).__name__}")
        self._check(ids, texts)
        self.data: list[str] = texts
        self.ids: list[DocId] | None = None if ids is None or ids == list(range(len(texts))) else ids

    @staticmethod
    def _load_tsv(path: Path) -> tuple[list[DocId], list[str]]:
        raw_ids, texts, line_of = [], [], {}
        for lineno, fields in read_tsv(path, "pid<TAB>passage[<TAB>title]", 2, 3):
            doc_id, text = fields[0].strip(), fields[1].strip(STRIP)
            if doc_id in line_of:
                raise ValueError(f"{path}:{lineno}: document id {doc_id!r} is repeated "
                                 f"(first on line {line_of[doc_id]})")
            line_of[doc_id] = lineno
            raw_ids.append(doc_id)
            texts.append(f"{fields[2]} | {text}" if len(fields) > 2 else text)
        if not texts:
            raise ValueError(f"collection file {path} holds no passages")
        return parse_ids(raw_ids), texts

    @staticmethod
    def _check(ids: list[DocId] | None, texts: list[object]) -> None:
        if not texts:
            raise ValueError("the collection is empty; give it at least one passage")
        for pid, text in enumerate(texts):
            if not isinstance(text, str):
                name = f"passage {pid}" + ("" if ids is None else f" (id {ids[pid]!r})")
                raise TypeError(f"{name} is a {type(text).__name__}, not a str")
        for pid, doc_id in enumerate(ids or ()):
            check_id(doc_id, f"the id of passage {pid}")

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __getitem__(self, pid: int) -> str:
        return self.data[pid]

    def id_of(self, pid: int) -> DocId:
        """The user's id of the passage at position `pid`."""
        return pid if self.ids is None else self.ids[pid]

    def provenance(self) -> str | None:
        return self.path

    def toDict(self) -> dict:  # noqa: N802 (the reference's name)
        return {"provenance": self.provenance()}

    def get_chunksize(self, nranks: int = 1) -> int:
        """Passages per chunk when indexing: the reference's min(25,000, 1 + N // nranks)."""
        return min(MAX_CHUNKSIZE, 1 + len(self) // nranks)

    def enumerate_batches(
        self, rank: int = 0, nranks: int = 1, chunksize: int | None = None
    ) -> Iterator[tuple[int, int, list[str]]]:
        """(chunk_idx, offset, texts) for the chunks of `rank`: chunks of `chunksize` passages are dealt to the
        ranks in turn (chunk i goes to rank i % nranks), offset is the pid of the chunk's first passage."""
        if not 0 <= rank < nranks:
            raise ValueError(f"rank must lie in [0, {nranks}), got {rank}")
        chunksize = chunksize or self.get_chunksize(nranks)
        for chunk_idx, offset in enumerate(range(0, len(self), chunksize)):
            if chunk_idx % nranks == rank:
                yield chunk_idx, offset, self.data[offset : offset + chunksize]

    def enumerate(self, rank: int = 0, nranks: int = 1, chunksize: int | None = None) -> Iterator[tuple[int, str]]:
        """(pid, text) for the passages of `rank`'s chunks (see enumerate_batches)."""
        for _, offset, texts in self.enumerate_batches(rank, nranks, chunksize):
            yield from zip(itertools.count(offset), texts)

    def save(self, new_path: str | os.PathLike, overwrite: bool = False) -> str:
        """Write `id<TAB>text` lines (ids are the pids when `ids` is None) atomically; return the path."""
        if not overwrite and os.path.exists(new_path):
            raise FileExistsError(f"{new_path} exists; pass overwrite=True to replace it")
        lines = (f"{check_tsv_field(self.id_of(pid), 'id')}\t{check_tsv_field(text, f'passage {pid}')}\n"
                 for pid, text in enumerate(self.data))
        write_lines(new_path, lines)
        return str(new_path)

    def __repr__(self) -> str:
        return f"Collection({len(self):,} passages, path={self.path!r})"


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Write text lines through a temporary sibling and a rename."""
    with atomic_write(Path(path)) as f:
        f.writelines(lines)
