"""`colbert index`: build a PLAID index of a collection with a checkpoint (Indexer.index)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from colbert.cli import add_command, emit, facade_verbose
from colbert.cli.inputs import COLLECTION_HELP, add_config_argument, config_overrides, index_location, \
    load_documents, make_config


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "index", help="build an index of a collection (TSV, JSONL or a folder of .txt/.md files)",
        description="Encode every document of a collection with a ColBERT checkpoint and build a compressed PLAID "
                    "index in the folder INDEX. An existing index is kept unless --overwrite is given (the old one "
                    "serves until the new one is complete); --resume continues an interrupted build. The texts are "
                    "stored with the index (documents.jsonl, which colbert-ai ignores) unless --no-store-documents; "
                    "a JSONL collection's fields other than id, text and title are stored as each document's "
                    "metadata.",
        example="colbert index --checkpoint colbert-ir/colbertv2.0 --collection notes/ --index ./indexes/notes\n"
                "colbert index -c ./checkpoints/colbert --collection collection.tsv --index ./indexes/scifact "
                "--nbits 2 --set doc_maxlen=300")
    parser.add_argument("-c", "--checkpoint", required=True, help="checkpoint folder or hub name")
    parser.add_argument("--collection", required=True, metavar="PATH", help=COLLECTION_HELP)
    parser.add_argument("-i", "--index", required=True, metavar="FOLDER", help="where to write the index")
    parser.add_argument("--nbits", type=int, choices=(1, 2, 4), help="bits per residual dimension (default 1; "
                        "the checkpoint's setting if it has one)")
    parser.add_argument("--doc-maxlen", type=int, help="passages are truncated to this many tokens")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_const", dest="overwrite", const=True, default=False,
                      help="replace an existing index")
    mode.add_argument("--resume", action="store_const", dest="overwrite", const="resume",
                      help="continue an interrupted build (or save a complete index again)")
    mode.add_argument("--reuse", action="store_const", dest="overwrite", const="reuse",
                      help="keep an existing complete index, build one otherwise")
    parser.add_argument("--no-store-documents", dest="store_documents", action="store_false",
                        help="do not keep the texts (and a JSONL file's other fields, as metadata) in the index's "
                             "documents.jsonl; `search --text` then reads the collection file")
    add_config_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from colbert.cli.info import describe
    from colbert.indexer import Indexer

    root, name = index_location(args.index)
    settings = config_overrides(args, nbits=args.nbits, doc_maxlen=args.doc_maxlen)
    config = make_config({**settings, "index_path": os.path.join(root, name)})  # config= index_root is ignored
    collection, metadata = load_documents(args.collection)
    indexer = Indexer(checkpoint=args.checkpoint, config=config, verbose=facade_verbose(args))
    path = indexer.index(name, collection, overwrite=args.overwrite, store_documents=args.store_documents,
                         metadata=metadata if args.store_documents else None)
    emit(args, describe(path), table=_table)


def _table(info: dict) -> str:
    return (f"Indexed {info['documents']:,} documents ({info['embeddings']:,} embeddings, nbits={info['nbits']}) "
            f"into {info['index']}")
