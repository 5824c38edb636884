"""Latency of diverse search (MMR, k=10 from 100 candidates) against plain search at k=10, on SciFact, one run.

    python benchmarks/diversity.py                   # -> benchmarks/results/diversity.json (and a line on stdout)

Uses (or builds) the nbits=2 SciFact index of benchmarks/pooling.py (no pooling; --docs N: its subset) with the
MiniLM ColBERT checkpoint.
For each of the 300 queries, in turn: plain `dense_search(Q, k=10)`, then `dense_search(Q, k=10, diversity=0.5)`
on the same encoded query (search only), and the same two with `search(text)` (query encoding included); the
order alternates from query to query. Reports medians and p95 of each and the ratio of medians, plus how many of
the plain top 10 the diverse top 10 keeps.

Also, per query: the diverse search's two stages timed apart (the candidates: PLAID at k=10's settings scoring 100
documents, with their evidence; the MMR picks), and how its candidates compare with those of a plain search at
k=100 (the candidate pool diverse search used before, PLAID at k=100's larger settings): how many of the plain top
10 each pool holds, how much the pools overlap, and how many of the diverse top 10 MMR over the k=100 pool would
pick the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this checkout's colbert first; not benchmarks/ itself, whose modules could shadow installed packages
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("pooling_benchmark", HERE / "pooling.py")
pooling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pooling)


def ms(seconds: list[float]) -> dict:
    values = sorted(s * 1e3 for s in seconds)
    return {"median_ms": statistics.median(values), "p95_ms": values[round(0.95 * (len(values) - 1))]}


def split_and_compare(searcher, Q, diversity: float) -> dict[str, float]:
    """Diverse search's two stages timed apart, and its candidates against those of a plain search at k=100."""
    import torch

    from colbert.search import plaid
    from colbert.search.diversity import diversify
    from colbert.search.params import scoring_at_least, search_params

    view, config, probe = searcher.ranker, searcher.config, searcher.config.query_maxlen
    with torch.inference_mode():
        t = time.perf_counter()
        survivors = plaid.survivors(view, Q, scoring_at_least(search_params(10, config), 100), probe)
        pids, scores, evidence = plaid.rank_with_evidence(view, Q, survivors, 100)
        candidates = time.perf_counter() - t
        t = time.perf_counter()
        top, _ = diversify(view, Q, pids, scores, 10, diversity, evidence)
        picks = time.perf_counter() - t
        old_pids, old_scores = plaid.plaid_search(view, Q, search_params(100, config), 100, probe)
        old_top, _ = diversify(view, Q, old_pids, old_scores, 10, diversity)  # MMR over the k=100 pool
        plain = set(plaid.plaid_search(view, Q, search_params(10, config), 10, probe)[0].tolist())
    pool, old_pool = set(pids.tolist()), set(old_pids.tolist())
    return {"diverse_candidates": candidates, "diverse_picks": picks,
            "plain_top10_in_pool": len(plain & pool) / len(plain),
            "plain_top10_in_k100_pool": len(plain & old_pool) / len(plain),
            "pool_overlap_with_k100_pool": len(pool & old_pool) / len(old_pool),
            "diverse_top10_shared_with_mmr_over_k100_pool": len(set(top.tolist()) & set(old_top.tolist())) / 10}


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
    times: dict[str, list[float]] = {"plain": [], "diverse": [], "plain_e2e": [], "diverse_e2e": [],
                                      "diverse_candidates": [], "diverse_picks": []}
    load_before = os.getloadavg()
    kept: list[float] = []
    pool_stats: dict[str, list[float]] = {}
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
        stages = split_and_compare(searcher, Q[0].float(), args.diversity)
        for name, value in stages.items():
            (times if name in times else pool_stats).setdefault(name, []).append(value)
    result = {"benchmark": "diversity", "index": f"{path.name} nbits=2, MiniLM head untrained", "k": 10,
              "command": "python benchmarks/diversity.py " + " ".join(sys.argv[1:]),
              "candidate_count": 100, "diversity": args.diversity, "threads": args.threads, "queries": len(texts),
              "note": "shared 2-core machine; plain and diverse interleaved per query",
              "load_average_before_after": [load_before[0], os.getloadavg()[0]],
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              **{name: ms(values) for name, values in times.items()},
              "mean_shared_with_plain_top10": statistics.mean(kept),
              "candidates": {name: statistics.mean(values) for name, values in pool_stats.items()}}
    result["ratio_search_only"] = result["diverse"]["median_ms"] / result["plain"]["median_ms"]
    result["ratio_with_encoding"] = result["diverse_e2e"]["median_ms"] / result["plain_e2e"]["median_ms"]
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"search only: plain {result['plain']['median_ms']:.1f} ms, diverse {result['diverse']['median_ms']:.1f} ms "
          f"({result['ratio_search_only']:.2f}x); with encoding: {result['plain_e2e']['median_ms']:.1f} ms vs "
          f"{result['diverse_e2e']['median_ms']:.1f} ms ({result['ratio_with_encoding']:.2f}x); "
          f"{result['mean_shared_with_plain_top10']:.0%} of the plain top 10 kept; candidates "
          f"{result['diverse_candidates']['median_ms']:.1f} ms + picks {result['diverse_picks']['median_ms']:.1f} ms")


if __name__ == "__main__":
    main()
