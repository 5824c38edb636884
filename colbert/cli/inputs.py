"""What the subcommands read: collections (TSV, JSONL, a folder of .txt/.md), queries (arguments, a file, stdin),
document ids, and `--set key=value` config overrides."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from colbert.cli import UsageError

STDIN = "-"
COLLECTION_HELP = ("a TSV of 'id<TAB>text[<TAB>title]' lines, a JSONL file of {\"id\": ..., \"text\": ...} objects "
                   "(optional \"title\"), or a folder of .txt/.md files (id = the file's relative path)")
QUERIES_HELP = ("queries: a TSV of 'qid<TAB>text' lines, a JSONL file of {\"qid\", \"question\"} objects, or a text "
                "file of one query per line (qids 0, 1, ...); '-' reads the same from stdin")


def load_collection(source: str) -> Any:
    """A Collection from a folder, a JSONL file or a TSV file (chosen by what `source` is / its suffix)."""
    return load_documents(source)[0]


def load_documents(source: str) -> tuple[Any, Optional[dict]]:
    """(Collection, metadata): the metadata are a JSONL file's fields other than id, text and title, as
    {id: {field: value}}, or None when there are none (TSV, folders)."""
    from colbert.data import Collection
    from colbert.data.folder import read_folder

    path = Path(source)
    if path.is_dir():
        return read_folder(path), None
    if not path.is_file():
        raise FileNotFoundError(f"{source} does not exist; give a TSV or JSONL file or a folder of .txt/.md files")
    if path.suffix.lower() in (".jsonl", ".json"):
        passages, metadata = _jsonl_documents(path)
        collection = Collection(data=passages)
        collection.path = str(path)
        return collection, metadata if any(metadata.values()) else None
    return Collection(path=str(path)), None


def _jsonl_documents(path: Path) -> tuple[dict, dict]:
    """({id: text}, {id: other fields}) from JSONL objects with "id" (or BEIR's "_id") and "text"; a "title" is
    prefixed to the text as in a TSV ("title | text")."""
    from colbert.data.collection import check_id
    from colbert.data.readers import read_jsonl

    passages: dict = {}
    metadata: dict = {}
    for lineno, record in read_jsonl(path):
        key = "id" if isinstance(record, dict) and "id" in record else "_id"
        if not isinstance(record, dict) or key not in record or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{lineno}: expected an object with \"id\" and a str \"text\"")
        doc_id = record.pop(key)
        check_id(doc_id, f"{path}:{lineno}: the id")
        if doc_id in passages:
            raise ValueError(f"{path}:{lineno}: document id {doc_id!r} is repeated")
        text, title = record.pop("text"), record.pop("title", None)
        passages[doc_id] = f"{title} | {text}" if title else text
        metadata[doc_id] = record
    if not passages:
        raise ValueError(f"{path} holds no documents")
    return passages, metadata


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="*", help="one or more queries; '-' reads them from stdin, one per line")
    parser.add_argument("-q", "--queries", metavar="FILE", help=QUERIES_HELP)


def load_queries(args: argparse.Namespace) -> Any:
    """Queries from the positional arguments, `--queries FILE`, or stdin ('-' in either place)."""
    from colbert.data import Queries

    if args.query and args.queries:
        raise UsageError("give queries as arguments or with --queries FILE, not both")
    if args.query == [STDIN] or args.queries == STDIN:
        return Queries(data=_query_lines(sys.stdin.read().splitlines(), "stdin"))
    if args.query:
        return Queries(data=list(args.query))
    if args.queries is None:
        raise UsageError("no query: give one as an argument, a file with --queries FILE, or '-' to read stdin")
    path = Path(args.queries)
    if not path.is_file():
        raise FileNotFoundError(f"the queries file {path} does not exist")
    if path.suffix.lower() in (".tsv", ".json", ".jsonl"):
        return Queries(path=str(path))
    return Queries(data=_query_lines(path.read_text(encoding="utf-8").splitlines(), str(path)))


def _query_lines(lines: Sequence[str], where: str) -> Any:
    """'qid<TAB>text' lines when every line has a tab, else one query per line (qids 0, 1, ...)."""
    from colbert.data.collection import parse_ids

    lines = [line.strip("\r\n ") for line in lines]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"no queries in {where}")
    if all("\t" in line for line in lines):
        qids, texts = zip(*(line.split("\t", 1) for line in lines))
        if len(set(qids)) < len(qids):
            raise ValueError(f"{where}: a qid is repeated")
        return dict(zip(parse_ids([q.strip() for q in qids]), texts))
    return list(lines)


def read_ids(source: str) -> list[str]:
    """Document ids, one per line (the first tab-separated field), from a file or stdin ('-')."""
    text = sys.stdin.read() if source == STDIN else Path(source).read_text(encoding="utf-8")
    ids = [line.split("\t", 1)[0].strip() for line in text.splitlines()]
    return [doc_id for doc_id in ids if doc_id]


def match_ids(raw: Iterable[str], known: Any) -> list:
    """Ids read as text, typed as the index holds them: "17" is 17 in an index of integer ids."""
    out = []
    for doc_id in raw:
        if doc_id not in known and doc_id.isascii() and doc_id.isdigit() and int(doc_id) in known:
            out.append(int(doc_id))
        else:
            out.append(doc_id)
    return out


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any ColBERTConfig field, e.g. --set doc_maxlen=300 (repeatable; values are read as "
                             "JSON when they parse, else as text)")


def config_overrides(args: argparse.Namespace, **given: Any) -> dict:
    """`--set` pairs as a dict, plus the `given` options that were set (not None)."""
    settings = {k: v for k, v in given.items() if v is not None}
    for pair in args.settings:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    return settings


def make_config(settings: dict) -> Any:
    from colbert.infra.config import ColBERTConfig

    return ColBERTConfig(**settings)


def index_location(path: str) -> tuple[str, str]:
    """(index_root, name) of an index folder given as a path."""
    full = Path(os.path.abspath(os.path.expanduser(path)))
    return str(full.parent), full.name
