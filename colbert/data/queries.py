"""Queries: {qid: text}, from a TSV, a JSONL file of question records, a dict or a list."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView

from colbert.data.collection import Castable, DocId, check_id, check_tsv_field, parse_ids, write_lines
from colbert.data.readers import read_jsonl, read_tsv

logger = logging.getLogger(__name__)

QueryId = DocId


class Queries(Castable):
    """Queries keyed by qid, in file order.

    Sources: a TSV of `qid<TAB>text[<TAB>...]` lines (read by the dialect of colbert.data.readers; extra columns
    are ignored, as in the reference, and a warning names the first line that has them; qids are ints when every
    qid is a plain integer, else strings, see colbert.data.collection), a `.json`/`.jsonl` file of one
    {"qid": ..., "question": ...} object per line (kept in `qas()`), a dict {qid: text or {"question": text, ...}},
    or a list of texts (qids 0..n-1). Iterating gives (qid, text) pairs, as in the reference.

    Example:
        >>> q = Queries(data={"q1": "what is colbert?", "q2": "late interaction"})
        >>> len(q), q["q2"], list(q.keys())
        (2, 'late interaction', ['q1', 'q2'])
    """

    def __init__(
        self, path: str | os.PathLike | None = None, data: Mapping[QueryId, Any] | Sequence[str] | None = None
    ):
        if (path is None) == (data is None):
            raise TypeError("Queries needs exactly one of path= (a TSV or JSONL file) or data= (a dict or list)")
        self.path = None if path is None else str(path)
        self._qas: dict[QueryId, dict] = {}
        if path is not None:
            is_json = str(path).endswith((".json", ".jsonl"))
            self.data = self._load_jsonl(Path(path)) if is_json else self._load_tsv(Path(path))
        elif isinstance(data, Mapping):
            self.data = self._from_mapping(data)
        elif isinstance(data, (list, tuple)):
            self.data = self._from_mapping(dict(enumerate(data)))
        else:
            raise TypeError(f"Queries data must be a dict {{qid: text}} or a list of texts, not {type(data).__name__}")
        if not self.data:
            raise ValueError(f"no queries in {self.path or 'the data given'}")

    def _from_mapping(self, data: Mapping[QueryId, Any]) -> dict[QueryId, str]:
        out = {}
        for qid, content in data.items():
            check_id(qid, "a qid")
            if isinstance(content, Mapping):
                if not isinstance(content.get("question"), str):
                    raise TypeError(f"query {qid!r} is a dict without a str 'question'")
                self._qas[qid] = dict(content)
                content = content["question"]
            if not isinstance(content, str):
                raise TypeError(f"query {qid!r} is a {type(content).__name__}, not a str")
            out[qid] = content
        return out

    @staticmethod
    def _load_tsv(path: Path) -> dict[QueryId, str]:
        qids, texts, line_of, extra = [], [], {}, None
        for lineno, fields in read_tsv(path, "qid<TAB>query", 2):
            qid = fields[0].strip()
            if len(fields) > 2 and extra is None:
                extra = lineno
            if qid in line_of:
                raise ValueError(f"{path}:{lineno}: qid {qid!r} is repeated (first on line {line_of[qid]})")
            line_of[qid] = lineno
            qids.append(qid)
            texts.append(fields[1])
        if extra is not None:
            warnings.warn(f"{path}:{extra}: queries have more than two tab-separated fields; only the first two "
                          "(qid, query) are read, the rest are ignored", stacklevel=4)
        return dict(zip(parse_ids(qids), texts))

    def _load_jsonl(self, path: Path) -> dict[QueryId, str]:
        records = {}
        for lineno, qa in read_jsonl(path):
            if not isinstance(qa, dict) or "qid" not in qa or not isinstance(qa.get("question"), str):
                raise ValueError(f"{path}:{lineno}: expected an object with 'qid' and a str 'question'")
            try:
                check_id(qa["qid"], "the qid")
            except TypeError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            if qa["qid"] in records:
                raise ValueError(f"{path}:{lineno}: qid {qa['qid']!r} is repeated")
            records[qa["qid"]] = qa
        return self._from_mapping(records)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[tuple[QueryId, str]]:
        return iter(self.data.items())

    def __getitem__(self, qid: QueryId) -> str:
        try:
            return self.data[qid]
        except KeyError:
            hint = " (qids read from files are ints when all of them are integers)" if isinstance(qid, str) else ""
            raise KeyError(f"no query with qid {qid!r}{hint}") from None

    def __contains__(self, qid: object) -> bool:
        return qid in self.data

    def keys(self) -> KeysView[QueryId]:
        return self.data.keys()

    def values(self) -> ValuesView[str]:
        return self.data.values()

    def items(self) -> ItemsView[QueryId, str]:
        return self.data.items()

    def qas(self) -> dict[QueryId, dict]:
        """The full records of queries given as dicts or JSONL objects (answers and such)."""
        return dict(self._qas)

    def provenance(self) -> str | None:
        return self.path

    def toDict(self) -> dict:  # noqa: N802 (the reference's name)
        return {"provenance": self.provenance()}

    def save(self, new_path: str | os.PathLike, overwrite: bool = False) -> str:
        """Write `qid<TAB>text` lines atomically; return the path."""
        if not overwrite and os.path.exists(new_path):
            raise FileExistsError(f"{new_path} exists; pass overwrite=True to replace it")
        write_lines(new_path, (f"{check_tsv_field(qid, 'qid')}\t{check_tsv_field(text, f'query {qid!r}')}\n"
                               for qid, text in self.data.items()))
        return str(new_path)

    def __repr__(self) -> str:
        return f"Queries({len(self):,} queries, path={self.path!r})"
