"""`colbert bundle export|import`: an index, its documents and checkpoint as one verified file (colbert.bundle)."""

from __future__ import annotations

import argparse
from typing import Any

from colbert.cli import add_command, common_options, emit, format_fields


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "bundle", help="export an index (with documents and checkpoint) to one file, or import one",
        description="Export an index folder, its collection and its checkpoint (or only the checkpoint's name) to "
                    "one .colbert file with a SHA-256 per file; import checks every checksum and refuses a "
                    "tampered or truncated bundle before anything appears at DEST.",
        example="colbert bundle export ./indexes/scifact scifact.colbert\n"
                "colbert bundle import scifact.colbert ./imported/scifact\n"
                "colbert search --index ./imported/scifact/index \"statins\"")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write INDEX to OUT.colbert", parents=[common_options()])
    export.add_argument("index", help="the index folder")
    export.add_argument("out", help="the bundle file to write (e.g. scifact.colbert)")
    export.add_argument("--checkpoint", choices=("include", "name"), default=None,
                        help="include the checkpoint folder (default when it is a folder here) or only its name")
    export.add_argument("--collection", help="the documents (TSV); default the index's collection file")
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    export.set_defaults(handler=run_export)
    imp = actions.add_parser("import", help="unpack and verify OUT.colbert into the new folder DEST",
                             parents=[common_options()])
    imp.add_argument("bundle", help="the bundle file")
    imp.add_argument("dest", help="a folder that does not exist yet; the index lands in DEST/index")
    imp.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace) -> None:
    from colbert.bundle import export_bundle

    manifest = export_bundle(args.index, args.out, checkpoint=args.checkpoint, collection=args.collection,
                             overwrite=args.overwrite)
    data = {"bundle": args.out, "files": len(manifest["files"]),
            "bytes": sum(f["size"] for f in manifest["files"].values()),
            "checkpoint": "included" if manifest["checkpoint"]["included"] else manifest["checkpoint"]["name"],
            "collection": manifest["collection"]}
    emit(args, data, table=lambda d: format_fields([(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool)
                                                          else v) for k, v in d.items()]))


def run_import(args: argparse.Namespace) -> None:
    from colbert.bundle import import_bundle

    index = import_bundle(args.bundle, args.dest)
    emit(args, {"index": str(index)}, table=lambda d: f"index imported to {d['index']}")
