"""Scoring a run with ir-measures, and run files (ColBERT's ranking TSV and TREC's run format).

A run is {qid: [(doc_id, rank, score), ...]} (a `colbert.data.Ranking` is one). ir-measures orders each query's
documents by score, so the scores are handed over as they are; a run read without scores gets -rank.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence, Union

from colbert.evaluation.datasets import Qrels, read_qrels

DEFAULT_MEASURES = ("nDCG@10", "R@100", "RR@10")  # RR@10 is MRR@10; ir-measures also reads "MRR@10" as it
RunLike = Union[Mapping[Any, Sequence[Sequence[Any]]], Any]


def parse_measures(names: Iterable[str]) -> list:
    """ir-measures measure objects from names such as "nDCG@10", "R@100", "MRR@10"."""
    import ir_measures

    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError) as e:
            raise ValueError(f"{name!r} is not a measure ir-measures knows (e.g. nDCG@10, R@100, RR@10, P@5, "
                             f"MAP): {e}") from None
    return measures


def score_run(run: RunLike, qrels: Union[Qrels, str, os.PathLike], measures: Iterable[str] = DEFAULT_MEASURES,
              per_query: bool = False) -> dict:
    """Aggregate measures (and optionally per-query values) of `run` against `qrels`, by ir-measures.

    Args:
        run: {qid: [(doc_id, rank, score), ...]}, a Ranking, or a run file (see read_run).
        qrels: {qid: {doc_id: rel}} or a qrels file (see read_qrels).
        per_query: also return {"per_query": {qid: {measure: value}}}.

    Returns:
        {"nDCG@10": ..., ...} keyed by the names given, plus "queries": the number of judged queries and
        "queries_without_results": judged queries the run has nothing for (ir-measures counts them as 0).
    """
    import ir_measures

    names = list(measures)
    parsed = parse_measures(names)
    if isinstance(qrels, (str, os.PathLike)):
        qrels = read_qrels(qrels)
    if isinstance(run, (str, os.PathLike)):
        run = read_run(run)
    scored = list(scored_docs(run))
    judged = [ir_measures.Qrel(qid, doc_id, rel) for qid, docs in qrels.items() for doc_id, rel in docs.items()]
    aggregate = ir_measures.calc_aggregate(parsed, judged, scored)
    result: dict[str, Any] = {name: float(aggregate[m]) for name, m in zip(names, parsed)}
    answered = {doc.query_id for doc in scored}
    result["queries"] = len(qrels)
    result["queries_without_results"] = sum(qid not in answered for qid in qrels)
    if per_query:
        by_measure = dict(zip(parsed, names))
        table: dict[str, dict[str, float]] = {}
        for metric in ir_measures.iter_calc(parsed, judged, scored):
            table.setdefault(metric.query_id, {})[by_measure[metric.measure]] = float(metric.value)
        result["per_query"] = table
    return result


def scored_docs(run: RunLike) -> Iterable[Any]:
    """ir_measures.ScoredDoc of every (qid, doc) of a run, ids as strings."""
    import ir_measures

    items = run.items() if hasattr(run, "items") else run
    for qid, rows in items:
        for row in rows:
            doc_id, rank = row[0], row[1]
            score = float(row[2]) if len(row) > 2 else -float(rank)
            yield ir_measures.ScoredDoc(str(qid), str(doc_id), score)


def read_run(path: str | os.PathLike) -> dict[str, list[tuple[str, int, float]]]:
    """A run file: TREC (`qid Q0 doc_id rank score tag`, space or tab separated) or ColBERT's ranking TSV
    (`qid<TAB>doc_id<TAB>rank[<TAB>score]`; without a score, -rank stands for it). Ids stay strings."""
    run: dict[str, list[tuple[str, int, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) == 6:
                    qid, _, doc_id, rank, score, _ = fields
                elif len(fields) in (3, 4):
                    qid, doc_id, rank = fields[:3]
                    score = fields[3] if len(fields) == 4 else -float(rank)
                else:
                    raise ValueError(f"{len(fields)} fields")
                run.setdefault(qid, []).append((doc_id, int(rank), float(score)))
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: expected TREC 'qid Q0 doc_id rank score tag' or "
                                 f"'qid<TAB>doc_id<TAB>rank[<TAB>score]' ({e}), got {line.strip()[:80]!r}") from None
    if not run:
        raise ValueError(f"{path} holds no results")
    return run


def write_trec_run(run: RunLike, path: str | os.PathLike, tag: str = "colbert") -> str:
    """Write a run in TREC format (`qid Q0 doc_id rank score tag`), which ir-measures and trec_eval read."""
    from colbert.utils.io import atomic_write
    from pathlib import Path

    items = run.items() if hasattr(run, "items") else run
    with atomic_write(Path(path)) as f:
        for qid, rows in items:
            for row in rows:
                doc_id, rank = row[0], row[1]
                score = float(row[2]) if len(row) > 2 else -float(rank)
                if any(c.isspace() for c in f"{qid}{doc_id}"):
                    raise ValueError(f"query {qid!r} / document {doc_id!r}: ids with spaces cannot be written "
                                     "as a TREC run")
                f.write(f"{qid} Q0 {doc_id} {rank} {score!r} {tag}\n")
    return str(path)
