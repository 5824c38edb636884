"""Token pooling on SciFact: pool_factor 2 and 3 against no pooling, in one run.

    python benchmarks/pooling.py                      # -> benchmarks/results/pooling.json (and a table on stdout)
    python benchmarks/pooling.py --rounds 2 --factors 1 2 3
    python benchmarks/pooling.py --docs 1000 --rounds 1   # a subset: the 300 queries' relevant documents + others
    python benchmarks/pooling.py --rounds 1 --checkpoint /tmp/sf-run/runs/colbert/checkpoints/colbert  # trained

Each build runs in its own process (rounds interleave the factors, so a busy machine slows them alike) with the
MiniLM ColBERT checkpoint of ../shared/compat, nbits 2, on all 5,183 SciFact documents (or, with --docs N, on a
subset: every document some query's qrels name, then others in a seeded random order up to N); it then searches the
300 queries at k=10. Per pool_factor: embeddings kept (and their share of the unpooled count), index bytes per document,
indexing time (median over rounds) and the part of it spent pooling, nDCG@10 (ir_measures, qrels.tsv) and
overlap@10 with the unpooled index's top 10. The default MiniLM checkpoint's 384 -> 128 head is untrained, so its
nDCG is low and says little about what pooling does to a trained ColBERT; `--checkpoint` measures another one (e.g.
the SciFact-trained MiniLM of examples/train_scifact.py, docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
SCIFACT = SHARED / "data" / "scifact"
WORK = HERE / "_work"

CHILD = r"""
import json, os, sys, time, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from colbert import ColBERTConfig, Indexer, Searcher
from colbert.data import Queries
from colbert.indexing import encoder

pooling = [0.0]
inner = encoder.pool_documents
def timed(*a, **kw):
    t = time.perf_counter(); out = inner(*a, **kw); pooling[0] += time.perf_counter() - t; return out
encoder.pool_documents = timed

config = ColBERTConfig(nbits=2, pool_factor=args["pool_factor"])
t = time.perf_counter()
indexer = Indexer(args["checkpoint"], config=config, verbose=0)
path = indexer.index(os.path.join(os.path.abspath(args["root"]), args["name"]), args["collection"],
                     overwrite=True)  # an absolute name is the index folder (index_root in config= is ignored)
seconds = time.perf_counter() - t
meta = json.load(open(f"{path}/metadata.json"))
nbytes = sum(p.stat().st_size for p in __import__("pathlib").Path(path).iterdir() if p.is_file())
searcher = Searcher(path, verbose=0)
ranking = searcher.search_all(Queries(path=args["queries"]), k=10)
run = {str(q): [[str(d), float(s)] for d, _, s in rows] for q, rows in ranking.data.items()}
json.dump({"seconds": seconds, "pool_seconds": pooling[0], "split_seconds": indexer.stats.seconds,
           "num_embeddings": meta["num_embeddings"], "num_passages": len(searcher.loaded.doclens),
           "index_bytes": nbytes, "run": run}, open(args["out"], "w"))
"""


def ensure_checkpoint() -> Path:
    path = WORK / "minilm-colbert"
    if not (path / "artifact.metadata").exists():
        subprocess.run([sys.executable, str(SHARED / "compat" / "build_checkpoint.py"), str(path)], check=True,
                       capture_output=True)
    return path


def collection_file(docs: int) -> Path:
    """SciFact's collection, or a subset of `docs` documents holding every document the qrels name."""
    full = SCIFACT / "collection.tsv"
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    if docs >= len(lines):
        return full
    relevant = {line.split("\t")[1] for line in (SCIFACT / "qrels.tsv").read_text().splitlines() if line.strip()}
    order = list(range(len(lines)))
    random.Random(0).shuffle(order)
    chosen = {i for i, line in enumerate(lines) if line.split("\t", 1)[0] in relevant}
    for i in order:
        if len(chosen) >= docs:
            break
        chosen.add(i)
    path = WORK / f"scifact_{docs}.tsv"
    path.write_text("".join(lines[i] for i in sorted(chosen)), encoding="utf-8")
    return path


def index_name(pool_factor: int, docs: int, tag: str = "") -> str:
    return f"scifact{'' if docs >= 5183 else f'_{docs}'}{tag}.pool{pool_factor}"


def build_and_search(checkpoint: Path, pool_factor: int, threads: int, collection: Path, docs: int,
                     tag: str = "") -> dict:
    out = WORK / f"pooling_pf{pool_factor}.json"
    args = {"checkpoint": str(checkpoint), "pool_factor": pool_factor, "threads": threads,
            "root": str(WORK / "indexes"), "name": index_name(pool_factor, docs, tag), "out": str(out),
            "collection": str(collection), "queries": str(SCIFACT / "queries.tsv")}
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], check=True, cwd=ROOT)
    return json.loads(out.read_text())


def ndcg_at_10(run: dict) -> float:
    import ir_measures
    from ir_measures import nDCG

    rows = [line.split("\t") for line in (SCIFACT / "qrels.tsv").read_text().splitlines() if line.strip()]
    qrels = [ir_measures.Qrel(q, d, int(r)) for q, d, r in rows]
    scored = [ir_measures.ScoredDoc(q, d, s) for q, docs in run.items() for d, s in docs]
    return ir_measures.calc_aggregate([nDCG @ 10], qrels, scored)[nDCG @ 10]


def overlap_at_10(run: dict, truth: dict) -> float:
    return statistics.mean(len({d for d, _ in run[q]} & {d for d, _ in truth[q]}) / 10 for q in truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", type=int, default=5183, help="index a subset of this many documents")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a ColBERT checkpoint folder (default: the untrained-head MiniLM checkpoint of "
                             "../shared/compat, built under benchmarks/_work/)")
    parser.add_argument("--out", default=str(HERE / "results" / "pooling.json"))
    args = parser.parse_args()
    if 1 not in args.factors:
        args.factors = [1, *args.factors]
    WORK.mkdir(exist_ok=True)
    checkpoint = args.checkpoint.resolve() if args.checkpoint else ensure_checkpoint()
    tag = f".{checkpoint.name}" if args.checkpoint else ""
    collection = collection_file(args.docs)
    num_docs = sum(1 for _ in open(collection, encoding="utf-8"))
    rounds: dict[int, list[dict]] = {f: [] for f in args.factors}
    for r in range(args.rounds):
        for factor in args.factors:
            print(f"round {r + 1}/{args.rounds}: pool_factor {factor}", file=sys.stderr, flush=True)
            rounds[factor].append(build_and_search(checkpoint, factor, args.threads, collection, args.docs,
                                                    tag))
    base = rounds[1][-1]
    base_seconds = statistics.median(m["seconds"] for m in rounds[1])
    results = {}
    for factor, runs in rounds.items():
        last = runs[-1]
        seconds = statistics.median(m["seconds"] for m in runs)
        results[f"pool_factor={factor}"] = {
            "num_embeddings": last["num_embeddings"],
            "embeddings_kept": last["num_embeddings"] / base["num_embeddings"],
            "bytes_per_doc": last["index_bytes"] / last["num_passages"],
            "index_seconds_median": seconds,
            "index_seconds": [m["seconds"] for m in runs],
            "pool_seconds": [m["pool_seconds"] for m in runs],
            "pool_share_of_build": [m["pool_seconds"] / m["seconds"] for m in runs],  # robust to a busy machine
            "split_seconds": [m["split_seconds"] for m in runs],
            "added_index_time": seconds / base_seconds - 1,
            "added_index_time_per_round": [m["seconds"] / b["seconds"] - 1 for m, b in zip(runs, rounds[1])],
            "nDCG@10": ndcg_at_10(last["run"]),
            "overlap@10_with_unpooled": overlap_at_10(last["run"], base["run"]),
        }
    result = {"benchmark": "pooling", "collection": f"scifact ({num_docs:,} docs, 300 queries)", "nbits": 2,
              "command": "python benchmarks/pooling.py " + " ".join(sys.argv[1:]),
              "threads": args.threads, "rounds": args.rounds,
              "checkpoint": str(args.checkpoint) if args.checkpoint else "MiniLM, untrained 384 -> 128 head",
              "note": "shared 2-core machine" + ("" if args.checkpoint else
                                                 "; the MiniLM head is untrained, so nDCG@10 is low for every factor"),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": results}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, m in results.items():
        print(f"{name:15} emb {m['num_embeddings']:>8,} ({m['embeddings_kept']:.1%})  {m['bytes_per_doc']:>7,.0f} B/doc  "
              f"index {m['index_seconds_median']:6.1f} s ({m['added_index_time']:+.1%})  "
              f"nDCG@10 {m['nDCG@10']:.4f}  overlap@10 {m['overlap@10_with_unpooled']:.3f}")


if __name__ == "__main__":
    main()
