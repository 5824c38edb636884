"""`colbert eval`: score a run file, or a search of an index, against qrels (colbert.evaluation, ir-measures)."""

from __future__ import annotations

import argparse
from typing import Any

from colbert.cli import UsageError, add_command, emit, facade_verbose, format_table
from colbert.cli.inputs import QUERIES_HELP, add_config_argument, config_overrides, make_config


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "eval", help="score a run or a search against qrels: nDCG@10, Recall@100, MRR@10",
        description="Score with ir-measures (the same numbers it gives on the run file). Either give a run file "
                    "(--run), or an index to search (--index) with the queries and qrels, or a dataset folder "
                    "(--data: BEIR's corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv, or collection.tsv, "
                    "queries.tsv, qrels.tsv). MRR@10 is ir-measures' RR@10.",
        example="colbert eval --index ./indexes/scifact --data ./beir/scifact\n"
                "colbert eval --index ./indexes/scifact --queries queries.tsv --qrels qrels.tsv --output run.trec\n"
                "colbert eval --run run.trec --qrels qrels.tsv --measures nDCG@10 P@5 --json")
    parser.add_argument("--run", metavar="FILE", help="a run file: TREC format or 'qid<TAB>doc_id<TAB>rank[<TAB>score]'")
    parser.add_argument("-i", "--index", metavar="FOLDER", help="search this index for the queries")
    parser.add_argument("--data", metavar="FOLDER", help="a BEIR folder or a folder of collection.tsv, queries.tsv, "
                        "qrels.tsv (gives queries and qrels)")
    parser.add_argument("--split", default="test", help="the BEIR qrels split (default test)")
    parser.add_argument("-q", "--queries", metavar="FILE", help=QUERIES_HELP)
    parser.add_argument("--qrels", metavar="FILE", help="'qid<TAB>doc_id<TAB>rel' lines (BEIR's header skipped) or "
                        "TREC qrels")
    parser.add_argument("-k", type=int, default=100, help="documents retrieved per query (default 100)")
    parser.add_argument("--measures", nargs="+", metavar="M", default=["nDCG@10", "R@100", "MRR@10"],
                        help="ir-measures names (default nDCG@10 R@100 MRR@10)")
    parser.add_argument("--per-query", action="store_true", help="also give each query's values")
    parser.add_argument("-c", "--checkpoint", help="encode queries with this checkpoint instead of the index's")
    parser.add_argument("-o", "--output", metavar="FILE", help="with --index: save the run (TREC format)")
    add_config_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from colbert.evaluation import load_dataset, read_qrels, score_run

    if (args.run is None) == (args.index is None):
        raise UsageError("give either --run FILE (a run to score) or --index FOLDER (to search)")
    if args.data and (args.queries or args.qrels):
        raise UsageError("--data gives the queries and qrels; do not also pass --queries or --qrels")
    if args.data:
        data = load_dataset(args.data, split=args.split, corpus=False)
        queries, qrels = data.queries, data.qrels
    else:
        if not args.qrels:
            raise UsageError("--qrels FILE is required (or --data FOLDER)")
        qrels = read_qrels(args.qrels)
        queries = _queries(args, qrels) if args.index else None
    if args.run:
        result = score_run(args.run, qrels, args.measures, per_query=args.per_query)
    else:
        result = _search_and_score(args, queries, qrels)
    emit(args, result, table=_table)


def _queries(args: argparse.Namespace, qrels: dict) -> Any:
    from colbert.cli.inputs import load_queries
    from colbert.data import Queries

    if not args.queries:
        raise UsageError("--index needs the queries: --queries FILE (or --data FOLDER)")
    args.query = []
    queries = load_queries(args)
    judged = {qid: text for qid, text in queries.items() if str(qid) in qrels}
    if not judged:
        raise ValueError(f"none of the queries in {args.queries} is judged in {args.qrels}")
    return Queries(data=judged)


def _search_and_score(args: argparse.Namespace, queries: Any, qrels: dict) -> dict:
    from colbert.evaluation import evaluate
    from colbert.searcher import Searcher

    searcher = Searcher(args.index, checkpoint=args.checkpoint, config=make_config(config_overrides(args)),
                        verbose=facade_verbose(args))
    result = evaluate(searcher, queries, qrels, k=args.k, measures=args.measures, per_query=args.per_query,
                      run_path=args.output)
    return {"index": searcher.index, **result}


def _table(result: dict) -> str:
    measures = [name for name, value in result.items() if isinstance(value, float)]
    lines = [format_table([[name, result[name]] for name in measures], ["measure", "value"])]
    lines.append(f"({result['queries']:,} judged queries"
                 + (f", {result['queries_without_results']:,} without results" if result["queries_without_results"]
                    else "") + ")")
    if "per_query" in result:
        rows = [[qid, *(values.get(name) for name in measures)] for qid, values in result["per_query"].items()]
        lines.append(format_table(rows, ["qid", *measures]))
    return "\n".join(lines)
