"""`colbert rerank`: order given documents for a query by MaxSim, from their texts (Checkpoint.rerank) or from an
index's stored embeddings (Searcher.search restricted to their ids)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from colbert.cli import UsageError, add_command, emit, facade_verbose, format_table
from colbert.cli.inputs import COLLECTION_HELP, STDIN, load_collection, match_ids, read_ids


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "rerank", help="rerank documents for a query, by text (a checkpoint) or by id (an index)",
        description="Score each given document against the query by MaxSim and print them best first. With "
                    "--documents, the texts are encoded by --checkpoint; with --index and --doc-ids, the documents' "
                    "embeddings are read from the index (nothing is encoded but the query).",
        example='colbert rerank -c colbert-ir/colbertv2.0 --query "what causes tides?" --documents candidates.jsonl\n'
                'printf "the moon\\nthe sun\\n" | colbert rerank -c ./checkpoints/colbert --query "tides" '
                "--documents -\n"
                'colbert rerank --index ./indexes/scifact --query "gene therapy" --doc-ids 4983 7912 152245')
    parser.add_argument("--query", required=True, help="the query text")
    parser.add_argument("-c", "--checkpoint", help="the model that encodes query and documents (with --documents); "
                        "with --index, overrides the index's model for the query")
    parser.add_argument("--documents", metavar="PATH",
                        help=f"the documents to rerank: {COLLECTION_HELP}; '-' reads stdin, one document per line "
                             "(ids 0, 1, ...)")
    parser.add_argument("-i", "--index", metavar="FOLDER", help="rerank documents of this index by id")
    parser.add_argument("--doc-ids", nargs="+", metavar="ID",
                        help="with --index: the ids to rerank; '@FILE' reads them from FILE, '-' from stdin, one a line")
    parser.add_argument("-k", type=int, help="how many to print (default all)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    if (args.documents is None) == (args.index is None):
        raise UsageError("give either --documents (texts, with --checkpoint) or --index with --doc-ids")
    if args.index is not None and not args.doc_ids:
        raise UsageError("--index needs --doc-ids: the ids of the documents to rerank")
    if args.documents is not None and (args.doc_ids or not args.checkpoint):
        raise UsageError("--documents needs --checkpoint (and takes no --doc-ids)")
    results = _by_id(args) if args.index else _by_text(args)
    emit(args, {"query": args.query, "results": results},
         table=lambda r: format_table([[h["rank"], h["doc_id"], h["score"]] for h in r["results"]],
                                      ["rank", "doc_id", "score"]))


def _by_text(args: argparse.Namespace) -> list[dict]:
    from colbert.modeling.checkpoint import Checkpoint

    if args.documents == STDIN:
        lines = [line.strip() for line in sys.stdin.read().splitlines()]
        ids, texts = list(range(len(lines))), lines
    else:
        collection = load_collection(args.documents)
        ids, texts = [collection.id_of(pid) for pid in range(len(collection))], list(collection)
    if not texts:
        raise ValueError("no documents to rerank")
    checkpoint = Checkpoint(args.checkpoint, verbose=facade_verbose(args))
    top = checkpoint.rerank(args.query, texts, k=args.k or len(texts))
    return [{"doc_id": ids[i], "index": i, "rank": rank, "score": score} for rank, (i, score) in enumerate(top, 1)]


def _by_id(args: argparse.Namespace) -> list[dict]:
    from colbert.searcher import Searcher

    searcher = Searcher(args.index, checkpoint=args.checkpoint, verbose=facade_verbose(args))
    raw = args.doc_ids
    if raw == [STDIN] or (len(raw) == 1 and raw[0].startswith("@")):
        raw = read_ids(STDIN if raw == [STDIN] else raw[0][1:])
    known = set(searcher.loaded.doc_ids) if searcher.loaded.doc_ids is not None else \
        set(range(searcher.loaded.num_passages))
    doc_ids = list(dict.fromkeys(match_ids(raw, known)))
    ids, ranks, scores = searcher.search(args.query, k=args.k or len(doc_ids), pids=doc_ids)
    return [{"doc_id": d, "rank": r, "score": s} for d, r, s in zip(ids, ranks, scores)]
