"""The one reader per file format of colbert.data: TSV (collections, queries, rankings) and JSONL (queries,
training examples). Every loader goes through these, so every file is read by the same documented dialect.

Both formats:
- Files are UTF-8. A UTF-8 byte-order mark at the start of the file is skipped. A byte sequence that is not UTF-8
  raises ValueError naming `path:line` and the byte.
- Lines end at `\\n`; a `\\r` before it is dropped (Windows files read the same). A lone `\\r` inside a line is
  an ordinary character (the reference's universal newlines would start a new line there).
- Blank lines (only spaces, tabs and line breaks) are skipped; line numbers count every line of the file.

TSV:
- Fields are separated by tabs, with no quoting: `"` is an ordinary character (as in MS MARCO's files).
- Spaces and line breaks at both ends of a line are stripped, as the reference does (`line.strip('\\n\\r ')`).
- Header rule: the first non-blank line is a header, and skipped, when its first field is one of `HEADER_NAMES`
  (compared case-insensitively): `id`, `pid`, `qid`, `docid`, `doc_id`, `_id`, `query_id`. No other line is ever
  taken for a header, so a collection whose first document has the id `pid` must be written with a header line.
- Column count: each loader states the fields a line must have; a line with fewer raises ValueError naming
  `path:line`, the layout and the line; a line with more either raises (Collection: a tab inside a passage would
  otherwise silently change the text) or is read with the extra fields named in a warning (Queries).
- The first field (the id) must not be empty.

JSONL: one JSON value per non-blank line; invalid JSON raises ValueError naming `path:line`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterator, Optional

logger = logging.getLogger(__name__)

BOM = "\ufeff"
STRIP = "\n\r "  # stripped from both ends of TSV lines (as the reference)
HEADER_NAMES = frozenset({"id", "pid", "qid", "docid", "doc_id", "_id", "query_id"})


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without its line ending) for each non-blank line of a UTF-8 file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad = raw[e.start:e.start + 1].hex()
                raise ValueError(f"{path}:{lineno}: byte 0x{bad} at column {e.start + 1} is not UTF-8; save the "
                                 "file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
            if lineno == 1 and line.startswith(BOM):
                line = line[1:]
            line = line[:-1] if line.endswith("\n") else line
            line = line[:-1] if line.endswith("\r") else line
            if line.strip(" \t\r\n"):
                yield lineno, line


def read_tsv(path: str | os.PathLike, layout: str, min_fields: int,
             max_fields: Optional[int] = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each data line of a TSV file, by the dialect of this module.

    Args:
        layout: the line layout for error messages, e.g. 'pid<TAB>passage[<TAB>title]'.
        min_fields: fewer fields raise ValueError.
        max_fields: more fields raise ValueError; None lets the caller decide about extra fields.
    """
    first = True
    for lineno, line in read_lines(path):
        fields = line.strip(STRIP).split("\t")
        if first and fields[0].strip().lower() in HEADER_NAMES:
            logger.info("%s:%d: skipping the header line %r", path, lineno, line[:80])
            first = False
            continue
        first = False
        if len(fields) < min_fields:
            raise ValueError(f"{path}:{lineno}: expected '{layout}' ({min_fields} tab-separated fields), got "
                             f"{len(fields)} field{'s' if len(fields) > 1 else ''}: {line[:80]!r}")
        if max_fields is not None and len(fields) > max_fields:
            raise ValueError(f"{path}:{lineno}: expected '{layout}' (at most {max_fields} tab-separated fields), got "
                             f"{len(fields)}: {line[:80]!r}. A tab inside a text must be replaced (e.g. by a space)")
        if not fields[0].strip():
            raise ValueError(f"{path}:{lineno}: the id (first field) is empty: {line[:80]!r}")
        yield lineno, fields


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSONL file."""
    for lineno, line in read_lines(path):
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
