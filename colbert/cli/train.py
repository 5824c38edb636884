"""`colbert train`: train a ColBERT model on a triples file (Trainer.train)."""

from __future__ import annotations

import argparse
from typing import Any

from colbert.cli import add_command, emit
from colbert.cli.inputs import COLLECTION_HELP, add_config_argument, config_overrides, load_collection, make_config


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "train", help="train a model on triples (query, positive, negatives...)",
        description="Train from a checkpoint (a ColBERT model, or a backbone such as bert-base-uncased, which gets "
                    "a new linear head) on JSONL triples '[qid, pos_id, neg_id, ...]' (or scored "
                    "'[qid, [id, score], ...]' for distillation). The checkpoint is saved under "
                    "ROOT/EXPERIMENT/none/NAME/checkpoints/colbert (colbert-ai's folder) and its path printed; --resume continues an "
                    "interrupted run with the same --name exactly.",
        example="colbert train --triples triples.jsonl --queries queries.tsv --collection collection.tsv "
                "-c bert-base-uncased --bsize 32 --lr 1e-5 --maxsteps 20000 --name msmarco-run1\n"
                "colbert train --triples triples.jsonl --queries queries.tsv --collection collection.tsv "
                "--name msmarco-run1 --resume")
    parser.add_argument("--triples", required=True, metavar="FILE", help="JSONL training examples")
    parser.add_argument("--queries", required=True, metavar="FILE", help="'qid<TAB>text' TSV (or JSONL)")
    parser.add_argument("--collection", required=True, metavar="PATH", help=COLLECTION_HELP)
    parser.add_argument("-c", "--checkpoint", help="where training starts (default bert-base-uncased, or the "
                        "interrupted run's with --resume)")
    parser.add_argument("--root", help="root folder of experiments (default ./experiments)")
    parser.add_argument("--experiment", help="experiment name, a folder under ROOT (default 'default')")
    parser.add_argument("--name", help="run name, a folder under EXPERIMENT (default a timestamp; needed by --resume)")
    parser.add_argument("--nranks", type=int, help="processes (one per GPU)")
    for flag, kind, what in (("--bsize", int, "examples per step over all ranks"), ("--lr", float, "learning rate"),
                             ("--maxsteps", int, "training steps"), ("--nway", int, "passages per example"),
                             ("--accumsteps", int, "gradient accumulation steps"),
                             ("--warmup", int, "linear warmup steps"), ("--save-every", int, "save every N steps")):
        parser.add_argument(flag, type=kind, help=what)
    parser.add_argument("--resume", action="store_true", help="continue the run named --name from its last save")
    add_config_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from colbert.infra.config import RunConfig
    from colbert.infra.run import Run
    from colbert.trainer import Trainer

    settings = config_overrides(args, bsize=args.bsize, lr=args.lr, maxsteps=args.maxsteps, nway=args.nway,
                                accumsteps=args.accumsteps, warmup=args.warmup, save_every=args.save_every)
    config = make_config(settings)
    run_settings = {k: v for k, v in (("root", args.root), ("experiment", args.experiment), ("name", args.name),
                                      ("nranks", args.nranks)) if v is not None}
    collection = load_collection(args.collection)
    with Run().context(RunConfig(**run_settings)):
        trainer = Trainer(triples=args.triples, queries=args.queries, collection=collection, config=config)
        path = trainer.train(checkpoint=args.checkpoint, resume=args.resume or None)
    emit(args, {"checkpoint": path, "steps": trainer.config.maxsteps}, table=lambda r: f"Saved {r['checkpoint']}")
