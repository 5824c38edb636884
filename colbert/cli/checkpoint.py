"""`colbert checkpoint new --from ENCODER OUT`: a ColBERT checkpoint from a plain encoder (new_checkpoint)."""

from __future__ import annotations

import argparse
from typing import Any

from colbert.cli import add_command, common_options, emit


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "checkpoint", help="make checkpoints: 'new' adds a ColBERT head to a plain encoder",
        description="Work with checkpoints. 'new' saves a plain transformers encoder (BERT family) with a fresh "
                    "projection head drawn from a fixed seed, in the reference layout: it loads identically "
                    "every time, and colbert-ai loads it too. The head is untrained: train it for quality.",
        example="colbert checkpoint new --from ./all-MiniLM-L6-v2 ./checkpoints/minilm-colbert --dim 128")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="encoder + deterministic head -> checkpoint folder",
                             parents=[common_options()], description="Write ENCODER plus a fresh DIM-wide head (fixed seed) to OUT.")
    new.add_argument("--from", dest="encoder", required=True, metavar="ENCODER",
                     help="the encoder's folder or hub name")
    new.add_argument("out", help="the checkpoint folder to write (must not exist or be empty)")
    new.add_argument("--dim", type=int, default=128, help="embedding width (default 128)")
    new.add_argument("--doc-maxlen", type=int, help="passage length in tokens to store (default 220)")
    new.add_argument("--query-maxlen", type=int, help="query length in tokens to store (default 32)")
    new.set_defaults(handler=run_new)


def run_new(args: argparse.Namespace) -> None:
    from colbert import ColBERTConfig, new_checkpoint

    settings = {k: v for k, v in (("doc_maxlen", args.doc_maxlen), ("query_maxlen", args.query_maxlen))
                if v is not None}
    out = new_checkpoint(args.encoder, args.out, dim=args.dim, config=ColBERTConfig(**settings))
    emit(args, {"checkpoint": str(out), "encoder": args.encoder, "dim": args.dim},
         table=lambda d: f"wrote {d['checkpoint']} ({d['encoder']} + a {d['dim']}-dim head)")
