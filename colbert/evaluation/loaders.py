"""The reference's `colbert.evaluation.loaders`: plain TSV readers for queries, qrels, top-k files, collections.

They keep the reference's return types (OrderedDicts keyed by int ids, a list of passages) and raise ValueError
naming the file and line where the reference asserted. New code should use colbert.data (Queries, Collection,
Ranking), which also take string ids.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any, Iterator, Optional

from colbert.utils.utils import print_message

__all__ = ["load_queries", "load_qrels", "load_topK", "load_topK_pids", "load_collection", "load_colbert"]


def _rows(path: str, strip: str | None = None) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            yield number, (line.strip(strip) if strip is not None else line.strip()).split("\t")


def _bad(path: str, number: int, problem: str) -> ValueError:
    return ValueError(f"{path}, line {number + 1}: {problem}")


def load_queries(queries_path: str) -> OrderedDict:
    """{qid (int): query} from `qid \\t query [\\t ...]` lines; a repeated qid raises."""
    queries: OrderedDict = OrderedDict()
    for number, (qid, query, *_) in _rows(queries_path):
        if int(qid) in queries:
            raise _bad(queries_path, number, f"query id {qid} is repeated")
        queries[int(qid)] = query
    print_message(f"#> Got {len(queries)} queries from {queries_path}. All QIDs are unique.")
    return queries


def load_qrels(qrels_path: Optional[str]) -> Optional[OrderedDict]:
    """{qid: [relevant pids]} from `qid \\t 0 \\t pid \\t 1` lines (MS MARCO qrels); None for no path."""
    if qrels_path is None:
        return None
    qrels: OrderedDict = OrderedDict()
    for number, fields in _rows(qrels_path):
        qid, x, pid, y = map(int, fields)
        if (x, y) != (0, 1):
            raise _bad(qrels_path, number, f"expected 'qid 0 pid 1', got {fields}")
        qrels.setdefault(qid, []).append(pid)
    return OrderedDict((qid, list(set(pids))) for qid, pids in qrels.items())


def load_topK(topK_path: str) -> tuple[OrderedDict, OrderedDict, OrderedDict]:
    """(queries, passages per qid, pids per qid) from `qid \\t pid \\t query \\t passage` lines."""
    queries: OrderedDict = OrderedDict()
    docs: OrderedDict = OrderedDict()
    pids: OrderedDict = OrderedDict()
    for number, (qid, pid, query, passage) in _rows(topK_path, strip="\n"):
        qid = int(qid)
        if queries.setdefault(qid, query) != query:
            raise _bad(topK_path, number, f"query {qid} has two different texts")
        docs.setdefault(qid, []).append(passage)
        pids.setdefault(qid, []).append(int(pid))
    return queries, docs, pids


def load_topK_pids(topK_path: str, qrels: Optional[dict]) -> tuple[dict, Optional[dict]]:
    """(pids per qid, positives per qid) from `qid \\t pid \\t ... [\\t label]` lines; positives come from the
    labels when the file has them (then qrels must be None), else from qrels."""
    pids: dict = defaultdict(list)
    positives: dict = defaultdict(list)
    for number, (qid, pid, *rest) in _rows(topK_path):
        pids[int(qid)].append(int(pid))
        if len(rest) > 1 and int(rest[-1]) >= 1:
            positives[int(qid)].append(int(pid))
    if not positives:
        return pids, qrels
    if qrels is not None:
        raise ValueError(f"{topK_path} is annotated with labels; do not pass qrels as well")
    return pids, {qid: set(positives.get(qid, [])) for qid in pids}


def load_collection(collection_path: str) -> list[str]:
    """Passages in line order from `pid \\t passage [\\t title]` lines ('title | passage' with a title); pids must
    be the line numbers (a header line 'id' is allowed)."""
    collection = []
    for number, (pid, passage, *rest) in _rows(collection_path, strip="\n\r "):
        if pid != "id" and int(pid) != number:
            raise _bad(collection_path, number, f"pid {pid} is not the line number {number}")
        collection.append(f"{rest[0]} | {passage}" if rest else passage)
    return collection


def load_colbert(args: Any, do_print: bool = True) -> tuple[Any, dict]:
    """(Checkpoint(args.checkpoint), {'arguments': {}}): the model in eval mode; settings come from the checkpoint's
    artifact.metadata, overridden by query_maxlen / doc_maxlen / dim given in args."""
    from colbert.infra.config import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint

    given = {k: getattr(args, k) for k in ("query_maxlen", "doc_maxlen", "dim") if getattr(args, k, None)}
    colbert = Checkpoint(args.checkpoint, colbert_config=ColBERTConfig(**given), verbose=3 if do_print else 0)
    return colbert, {"arguments": {}}
