"""`colbert info INDEX`: what an index holds (documents, embeddings, nbits, size on disk, checkpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from colbert.cli import add_command, emit, format_fields


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "info", help="describe an index: documents, embeddings, nbits, size, checkpoint",
        description="Open an index (memory-mapped, nothing is decompressed) and describe it.",
        example="colbert info ./indexes/scifact\ncolbert info ./indexes/scifact --json")
    parser.add_argument("index", help="the index folder (the one holding metadata.json)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    emit(args, describe(args.index), table=_table)


def describe(index: str) -> dict:
    """The facts `colbert info` prints, as a dict (the --json output)."""
    from colbert.indexing.documents import DOCUMENTS_FILE
    from colbert.search.index import LoadedIndex

    loaded = LoadedIndex.open(index, mmap=True)
    return {
        "index": str(loaded.path),
        "documents": loaded.num_live,
        "embeddings": loaded.num_embeddings,
        "avg_doclen": round(loaded.num_embeddings / max(1, loaded.num_live), 2),
        "dim": loaded.dim,
        "nbits": loaded.nbits,
        "partitions": loaded.num_partitions,
        "size_bytes": folder_size(Path(loaded.path)),
        "checkpoint": loaded.config.checkpoint,
        "doc_ids": "0..N-1" if loaded.doc_ids is None else "own ids",
        "texts_stored": (Path(loaded.path) / DOCUMENTS_FILE).is_file(),
    }


def folder_size(path: Path) -> int:
    """Bytes of the regular files under `path` (hard links shared between files counted once)."""
    seen, total = set(), 0
    for file in path.rglob("*"):
        if file.is_file() and not file.is_symlink():
            st = file.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def _table(info: dict) -> str:
    return format_fields([
        ("index", info["index"]), ("documents", f"{info['documents']:,}"), ("embeddings", f"{info['embeddings']:,}"),
        ("avg doclen", f"{info['avg_doclen']:.1f}"), ("dim", info["dim"]), ("nbits", info["nbits"]),
        ("partitions", f"{info['partitions']:,}"), ("size on disk", _human(info["size_bytes"])),
        ("checkpoint", info["checkpoint"]), ("document ids", info["doc_ids"]),
        ("texts stored", "yes" if info["texts_stored"] else "no"),
    ])
