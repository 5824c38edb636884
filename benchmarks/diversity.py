"""Latency of diverse search (MMR, k=10 from 100 candidates) against plain search at k=10, on SciFact, one run.

    python benchmarks/diversity.py                   # -> benchmarks/results/diversity.json (and a line on stdout)

Uses (or builds) the nbits=2 SciFact index of benchmarks/pooling.py (no pooling; --docs N: its subset) with the
MiniLM ColBERT checkpoint.
For each of the 300 queries, in turn: plain `dense_search(Q, k=10)`, then `dense_search(Q, k=10, diversity=0.5)`
on the same encoded query (search only), and the same two with `search(text)` (query encoding included); the
order alternates from query to query. Reports medians and p95 of each and the ratio of medians, plus how many of
the plain top 10 the diverse top 10 keeps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this checkout's colbert first; not benchmarks/ itself, whose kernels.py would shadow the `kernels` package
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("pooling_benchmark", HERE / "pooling.py")
pooling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pooling)


def ms(seconds: list[float]) -> dict:
    values = sorted(s * 1e3 for s in seconds)
    return {"median_ms": statistics.median(values), "p95_ms": values[round(0.95 * (len(values) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diversity", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", type=int, default=5183, help="the subset of benchmarks/pooling.py --docs N")
    parser.add_argument("--out", default=str(HERE / "results" / "diversity.json"))
    args = parser.parse_args()
    import torch

    from colbert import ColBERTConfig, Indexer, Searcher
    from colbert.data import Queries
    from colbert.indexing import format as index_format

    torch.set_num_threads(args.threads)
    checkpoint = pooling.ensure_checkpoint()
    path = pooling.WORK / "indexes" / pooling.index_name(1, args.docs)
    if not index_format.is_complete(path):
        Indexer(str(checkpoint), config=ColBERTConfig(nbits=2),  # an absolute name is the index folder
                verbose=1).index(str(path), str(pooling.collection_file(args.docs)), overwrite=True)
    searcher = Searcher(str(path), verbose=0)
    texts = list(Queries(path=pooling.SCIFACT / "queries.tsv").values())
    for text in texts[:20]:  # warm-up
        searcher.search(text, k=10)
        searcher.search(text, k=10, diversity=args.diversity)
    times: dict[str, list[float]] = {"plain": [], "diverse": [], "plain_e2e": [], "diverse_e2e": []}
    kept = []
    for i, text in enumerate(texts):
        Q = searcher.encode(text)
        runs = [("plain", 0.0), ("diverse", args.diversity)]
        for name, diversity in runs if i % 2 == 0 else runs[::-1]:
            t = time.perf_counter()
            ids, _, _ = searcher.dense_search(Q, k=10, diversity=diversity)
            times[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            searcher.search(text, k=10, diversity=diversity)
            times[f"{name}_e2e"].append(time.perf_counter() - t)
            if name == "plain":
                plain_ids = set(ids)
            else:
                diverse_ids = set(ids)
        kept.append(len(plain_ids & diverse_ids) / 10)
    result = {"benchmark": "diversity", "index": f"{path.name} nbits=2, MiniLM head untrained", "k": 10,
              "command": "python benchmarks/diversity.py " + " ".join(sys.argv[1:]),
              "candidates": 100, "diversity": args.diversity, "threads": args.threads, "queries": len(texts),
              "note": "shared 2-core machine; plain and diverse interleaved per query",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              **{name: ms(values) for name, values in times.items()},
              "mean_shared_with_plain_top10": statistics.mean(kept)}
    result["ratio_search_only"] = result["diverse"]["median_ms"] / result["plain"]["median_ms"]
    result["ratio_with_encoding"] = result["diverse_e2e"]["median_ms"] / result["plain_e2e"]["median_ms"]
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"search only: plain {result['plain']['median_ms']:.1f} ms, diverse {result['diverse']['median_ms']:.1f} ms "
          f"({result['ratio_search_only']:.2f}x); with encoding: {result['plain_e2e']['median_ms']:.1f} ms vs "
          f"{result['diverse_e2e']['median_ms']:.1f} ms ({result['ratio_with_encoding']:.2f}x); "
          f"{result['mean_shared_with_plain_top10']:.0%} of the plain top 10 kept")


if __name__ == "__main__":
    main()
