"""`colbert search`: the top k documents of an index for one query or many (Searcher.search_all)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from colbert.cli import add_command, emit, facade_verbose, format_table
from colbert.cli.inputs import add_config_argument, add_query_arguments, config_overrides, load_collection, \
    load_queries, make_config

logger = logging.getLogger(__name__)

SNIPPET = 80  # characters of a document's text shown in the table with --text


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "search", help="search an index for one query or many (arguments, a file or stdin)",
        description="Search an index with PLAID (or exhaustively with --exact) and print the top k documents of "
                    "each query: a table by default, JSON with --json; --output saves the ranking as "
                    "'qid<TAB>doc_id<TAB>rank<TAB>score' lines, which `colbert eval --run` reads.",
        example='colbert search --index ./indexes/notes "how do I rotate the keys?"\n'
                "colbert search --index ./indexes/scifact --queries queries.tsv -k 100 --output run.tsv\n"
                "cat questions.txt | colbert search --index ./indexes/notes - --json")
    parser.add_argument("-i", "--index", required=True, metavar="FOLDER", help="the index folder")
    add_query_arguments(parser)
    parser.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    parser.add_argument("-c", "--checkpoint", help="encode queries with this checkpoint instead of the index's")
    parser.add_argument("--exact", action="store_true", help="score every document exactly (slow; no PLAID)")
    parser.add_argument("--diversity", type=float, default=0.0, metavar="LAMBDA",
                        help="0 (default, plain search) to 1: pick results by maximal marginal relevance, trading "
                             "relevance for results unlike each other (docs/search.md)")
    parser.add_argument("--text", action="store_true",
                        help="show each result's text: stored in the index, else read from the collection file "
                             "it was built from")
    parser.add_argument("--collection", metavar="PATH", help="the collection, for --text, when it has moved")
    parser.add_argument("-o", "--output", metavar="FILE", help="also save the ranking to FILE (TSV)")
    add_config_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from colbert.searcher import Searcher

    queries = load_queries(args)
    config = make_config(config_overrides(args))
    searcher = Searcher(args.index, checkpoint=args.checkpoint, config=config, verbose=facade_verbose(args))
    texts = _texts(args, searcher) if args.text else None
    ranking = searcher.search_all(queries, k=args.k, exact=args.exact, diversity=args.diversity)
    if args.output:
        ranking.save(args.output)
    results = [{"qid": qid, "query": queries[qid], "results": [_hit(doc_id, rank, score, texts)
                                                                for doc_id, rank, score in ranking[qid]]}
               for qid in queries.keys()]
    emit(args, {"index": searcher.index, "k": args.k, "queries": results}, table=_table)


def _texts(args: argparse.Namespace, searcher: Any) -> Any:
    """{doc_id: text}: the --collection given, else the texts stored in the index, else its collection file."""
    if args.collection is None and searcher.documents is not None:
        return _StoredTexts(searcher.documents)
    source = args.collection or searcher.config.collection
    if not source or str(source).startswith("<"):
        raise ValueError(f"the index at {searcher.index} stores no texts and names no collection file (it was built "
                         "from texts in memory); pass --collection PATH to show texts")
    if args.collection is None and searcher.loaded.metadata.get("updates"):
        logger.warning("%s was changed by `colbert update` since it was built; texts come from %s, which lacks the "
                       "documents added since (shown without text) and may hold old texts of replaced ones. Pass "
                       "--collection with the current texts.", searcher.index, source)
    collection = load_collection(str(source))
    return {collection.id_of(pid): text for pid, text in enumerate(collection)}


class _StoredTexts:
    """`get(doc_id)` of the texts in documents.jsonl."""

    def __init__(self, documents: Any) -> None:
        self.documents = documents

    def get(self, doc_id: Any) -> Any:
        return self.documents.get(doc_id)["text"]


def _hit(doc_id: Any, rank: int, score: float, texts: Any) -> dict:
    hit = {"doc_id": doc_id, "rank": rank, "score": score}
    if texts is not None:
        hit["text"] = texts.get(doc_id)
    return hit


def _snippet(text: Any) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


def _table(result: dict) -> str:
    blocks = []
    for query in result["queries"]:
        with_text = any("text" in hit for hit in query["results"])
        header = ["rank", "doc_id", "score"] + (["text"] if with_text else [])
        rows = [[hit["rank"], hit["doc_id"], hit["score"]] + ([_snippet(hit.get("text"))] if with_text else [])
                for hit in query["results"]]
        title = f"query {query['qid']}: {query['query']}" if len(result["queries"]) > 1 else None
        table = format_table(rows, header) if rows else "(no results)"
        blocks.append(table if title is None else f"{title}\n{table}")
    return "\n\n".join(blocks)
