"""`colbert update`: add documents to an index and remove others, committed at once (IndexUpdater)."""

from __future__ import annotations

import argparse
from typing import Any

from colbert.cli import UsageError, add_command, emit
from colbert.cli.inputs import COLLECTION_HELP, load_documents, match_ids, read_ids


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "update", help="add documents to an index and/or remove some, in one atomic commit",
        description="Remove the documents whose ids are listed in --remove, then encode and add the documents of "
                    "--add (so a file can replace documents by removing and re-adding their ids), and commit the "
                    "new version of the index with one atomic rename: searchers opened before keep the old "
                    "version. Added documents are compressed with the index's centroids; rebuild the index when "
                    "it has grown a lot (a warning says when). When the index stores its documents, the added texts (and "
                    "a JSONL file's other fields, as metadata) are stored too.",
        example="colbert update ./indexes/notes --add new_notes/\n"
                "colbert update ./indexes/scifact --remove stale_ids.txt --add corrected.jsonl")
    parser.add_argument("index", help="the index folder")
    parser.add_argument("--add", metavar="PATH", help=f"documents to add: {COLLECTION_HELP}")
    parser.add_argument("--remove", metavar="FILE", help="ids to remove, one per line ('-' reads stdin)")
    parser.add_argument("-c", "--checkpoint", help="encode added documents with this checkpoint (default: the "
                        "index's)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from colbert.index_updater import IndexUpdater

    if args.add is None and args.remove is None:
        raise UsageError("nothing to do: give --add PATH and/or --remove FILE")
    added, metadata = load_documents(args.add) if args.add else (None, None)
    removals = read_ids(args.remove) if args.remove else []
    updater = IndexUpdater(searcher=args.index, checkpoint=args.checkpoint)
    removed = updater.remove(match_ids(removals, set(updater.ids))) if removals else []
    new_ids = updater.add(added, metadata=metadata) if added is not None else []
    updater.persist_to_disk()
    emit(args, {"index": args.index, "added": len(new_ids), "removed": len(removed), "documents": len(updater)},
         table=lambda r: f"Added {r['added']:,} and removed {r['removed']:,} documents; {r['index']} now holds "
                         f"{r['documents']:,}")
