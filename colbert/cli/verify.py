"""`colbert verify INDEX`: check every file of an index and list every problem (exit 1 when there is one)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from colbert.cli import add_command, emit


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "verify", help="check an index's files end to end; exit 1 listing every problem",
        description="Check that every file of an index is present, readable and consistent with the others "
                    "(codes, residuals, doclens, IVF, document ids). Prints 'ok' or one problem per line, and exits "
                    "with 1 when there is a problem.",
        example="colbert verify ./indexes/scifact && echo sound")
    parser.add_argument("index", help="the index folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from colbert.index_updater import verify_index

    problems = verify_index(args.index)
    emit(args, {"index": args.index, "ok": not problems, "problems": problems},
         table=lambda r: "ok" if r["ok"] else "\n".join(r["problems"]))
    if problems:
        print(f"colbert verify: error: {args.index} has {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0
