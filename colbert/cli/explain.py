"""`colbert explain`: why a document scores what it does for a query, token by token (colbert.explain)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from colbert.cli import UsageError, add_command, emit, facade_verbose


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "explain", help="show which document tokens each query token matched (HTML heatmap + terminal)",
        description="Explain a document's score for a query: for each query token, the document token it matched "
                    "and its contribution (the MaxSim terms, which sum to the score). Writes a self-contained HTML "
                    "page (the text shaded token by token; hover for details) and prints a compact view. Explain a "
                    "document of an index (its stored vectors, the score search gives it) or any text with a "
                    "checkpoint.",
        example='colbert explain --index ./indexes/scifact "statins and heart disease" 4983 --html why.html\n'
                'colbert explain --checkpoint ./minilm-colbert "late interaction" --text "ColBERT scores by MaxSim"')
    parser.add_argument("query", help="the query text")
    parser.add_argument("doc_id", nargs="?", help="the document's id in --index")
    parser.add_argument("--index", help="the index folder holding the document")
    parser.add_argument("--checkpoint", help="with --index: the query encoder (default the index's); without: the "
                                             "model that encodes --text")
    parser.add_argument("--collection", help="with --index: the passages (TSV), to show the document's text when "
                                             "the index does not name a collection that exists here")
    parser.add_argument("--text", help="the document's text (required without --index)")
    parser.add_argument("--html", default="explain.html", help="where to write the page (default: explain.html); "
                                                               "'-' writes none")
    parser.add_argument("--top", type=int, default=10, help="contributions listed in the terminal view (default 10)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    explanation = explain(args)
    if args.html != "-":
        Path(args.html).write_text(explanation.to_html(), encoding="utf-8")
    data = {**explanation.as_dict(), "html": None if args.html == "-" else str(Path(args.html).resolve())}
    emit(args, data, table=lambda _: explanation.to_text(top=args.top) + (
        "" if args.html == "-" else f"\n\nheatmap written to {args.html}"))


def explain(args: argparse.Namespace) -> Any:
    if args.index is None:
        if args.checkpoint is None or args.text is None or args.doc_id is not None:
            raise UsageError("without --index, give --checkpoint and --text (and no doc_id)")
        from colbert.modeling.checkpoint import Checkpoint

        return Checkpoint(args.checkpoint, verbose=facade_verbose(args)).explain(args.query, args.text)
    if args.doc_id is None:
        raise UsageError("with --index, give the document's id after the query")
    from colbert import Searcher
    from colbert.data.collection import parse_ids

    searcher = Searcher(args.index, checkpoint=args.checkpoint, collection=args.collection,
                        verbose=facade_verbose(args))
    return searcher.explain(args.query, document_id(searcher.loaded, args.doc_id, parse_ids), text=args.text)


def document_id(loaded: Any, raw: str, parse_ids: Any) -> Any:
    """The index's id for a command-line string: as given ("doc-7", "007") or as an int ("7"), whichever it has."""
    for candidate in dict.fromkeys([raw, parse_ids([raw])[0]]):
        try:
            loaded.pid_of(candidate)
            return candidate
        except KeyError:
            continue
    return raw  # Searcher.explain raises the KeyError that names it
