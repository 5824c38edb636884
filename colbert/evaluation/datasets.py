"""Test collections: BEIR folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and TSV files.

Qrels are {qid: {doc_id: relevance}} with the ids as strings, as ir-measures compares them; a run's ids are
turned into strings the same way (`str(17) == "17"`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from colbert.data import Collection, Queries

logger = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]

BEIR_HEADER = ("query-id", "corpus-id", "score")
TSV_FILES = ("collection.tsv", "queries.tsv", "qrels.tsv")


@dataclass
class Dataset:
    """A test collection: the documents (None when only queries and qrels were read), the queries to evaluate
    (those with judgements) and the qrels."""

    corpus: Optional[Collection]
    queries: Queries
    qrels: Qrels
    name: str = ""

    def __repr__(self) -> str:
        docs = "no corpus" if self.corpus is None else f"{len(self.corpus):,} documents"
        return f"Dataset({self.name!r}: {docs}, {len(self.queries):,} queries, " \
               f"{sum(map(len, self.qrels.values())):,} judgements)"


def load_dataset(path: str | os.PathLike, split: str = "test", corpus: bool = True) -> Dataset:
    """A BEIR folder (it holds corpus.jsonl) or a folder of collection.tsv, queries.tsv and qrels.tsv.

    Args:
        split: the BEIR qrels file, qrels/<split>.tsv.
        corpus: read the documents too (False when only searching an existing index).
    """
    folder = Path(path)
    if (folder / "corpus.jsonl").is_file() or (folder / "qrels").is_dir():
        return load_beir(folder, split, corpus=corpus)
    if all((folder / name).is_file() for name in TSV_FILES[1:]):
        return load_tsv(folder / TSV_FILES[0] if corpus else None, folder / "queries.tsv", folder / "qrels.tsv",
                        name=folder.name)
    raise FileNotFoundError(f"{folder} is neither a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) nor "
                            f"a folder of {', '.join(TSV_FILES)}")


def load_beir(path: str | os.PathLike, split: str = "test", corpus: bool = True) -> Dataset:
    """A BEIR folder: corpus.jsonl ({"_id", "title", "text"}; the text is "title | text" when there is a title,
    as the TSV reader does), queries.jsonl ({"_id", "text"}, only the queries judged in the split are kept) and
    qrels/<split>.tsv."""
    folder = Path(path)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"{qrels_path} does not exist; the splits here are {found or 'none'}")
    qrels = read_qrels(qrels_path)
    texts = {qid: text for qid, text in _read_beir_jsonl(folder / "queries.jsonl", title=False).items()
             if qid in qrels}
    missing = [qid for qid in qrels if qid not in texts]
    if missing:
        raise ValueError(f"{qrels_path} judges {len(missing):,} queries that queries.jsonl lacks, e.g. {missing[:3]}")
    docs = Collection(data=_read_beir_jsonl(folder / "corpus.jsonl", title=True)) if corpus else None
    if docs is not None:
        docs.path = str(folder / "corpus.jsonl")
    return Dataset(docs, Queries(data={qid: texts[qid] for qid in qrels}), qrels, name=folder.name)


def load_tsv(collection: str | os.PathLike | None, queries: str | os.PathLike, qrels: str | os.PathLike,
             name: str = "") -> Dataset:
    """`pid<TAB>text` documents, `qid<TAB>text` queries (only the judged ones are kept) and qrels
    (see read_qrels)."""
    judged = read_qrels(qrels)
    all_queries = Queries(path=str(queries))
    kept = {qid: text for qid, text in all_queries.items() if str(qid) in judged}
    if not kept:
        raise ValueError(f"none of the queries in {queries} is judged in {qrels}; check that they belong together")
    docs = Collection(path=str(collection)) if collection is not None else None
    return Dataset(docs, Queries(data=kept), judged, name=name)


def read_qrels(path: str | os.PathLike) -> Qrels:
    """Relevance judgements from `qid<TAB>doc_id<TAB>rel` lines (BEIR's header 'query-id corpus-id score' is
    skipped) or TREC's `qid 0 doc_id rel` (space or tab separated).

    Raises:
        ValueError: a line with another number of fields or a relevance that is not an integer (file:line).
    """
    from colbert.data.readers import read_lines

    qrels: Qrels = {}
    for lineno, line in read_lines(path):
        fields = line.split()
        if not fields or (lineno == 1 and tuple(fields) == BEIR_HEADER):
            continue
        if len(fields) == 3:
            qid, doc_id, rel = fields
        elif len(fields) == 4:
            qid, _, doc_id, rel = fields
        else:
            raise ValueError(f"{path}:{lineno}: expected 'qid doc_id relevance' or TREC's 'qid 0 doc_id "
                             f"relevance', got {line.strip()[:80]!r}")
        try:
            qrels.setdefault(qid, {})[doc_id] = int(rel)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: relevance {rel!r} is not an integer") from None
    if not qrels:
        raise ValueError(f"{path} holds no judgements")
    return qrels


def _read_beir_jsonl(path: Path, title: bool) -> dict[str, str]:
    """{_id: text} of a BEIR corpus.jsonl or queries.jsonl (ids kept as strings, as in the qrels)."""
    from colbert.data.readers import read_jsonl

    out: dict[str, str] = {}
    for lineno, record in read_jsonl(path):
        if not isinstance(record, dict) or "_id" not in record or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{lineno}: expected an object with \"_id\" and a str \"text\"")
        text = record["text"]
        if title and record.get("title"):
            text = f"{record['title']} | {text}"
        out[str(record["_id"])] = text
    return out
