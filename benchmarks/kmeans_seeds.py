"""Index quality by k-means method and seed: SciFact nDCG@10 / R@100 of nbits-2 indexes whose centroids come from our
CPU `lloyd` or from fastkmeans' CPU loop (bf16), at several seeds, everything else equal.

    python benchmarks/kmeans_seeds.py                       # -> benchmarks/results/kmeans_seeds.json

Tells whether a difference in nDCG@10 between two builds is the k-means method or the spread any seed gives.
Each build encodes the collection again (default settings, MiniLM checkpoint of ../shared/compat, 2 threads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from search import SCIFACT, WORK, ensure_checkpoint, quality  # noqa: E402


def fastkmeans_bf16(sample, num_partitions, niters, device, seed=123, bf16=False):
    """fastkmeans' CPU loop in bf16 (1024 x 4096 blocks), normalised and rounded as train_centroids does."""
    import numpy as np
    import torch.nn.functional as F
    from fastkmeans import FastKMeans

    kmeans = FastKMeans(d=sample.size(1), k=num_partitions, niter=niters, gpu=False, seed=seed,
                        max_points_per_centroid=1 << 30, verbose=False, dtype=torch.bfloat16,
                        chunk_size_data=1 << 10, chunk_size_centroids=1 << 12)
    with torch.random.fork_rng(devices=[]):
        kmeans.train(sample.half().contiguous().numpy())
    return F.normalize(torch.from_numpy(np.asarray(kmeans.centroids)).float(), dim=-1).half()


def build_and_score(checkpoint: Path, root: Path, method: str, seed: int) -> dict:
    import colbert.indexing as build
    from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
    from colbert.data import Queries
    from colbert.indexing.kmeans import train_centroids

    original = build.train_centroids
    if method == "lloyd":
        build.train_centroids = lambda *a, **k: train_centroids(*a, **{**k, "seed": seed})
    else:
        build.train_centroids = lambda *a, **k: fastkmeans_bf16(*a, **{**k, "seed": seed})
    try:
        t = time.perf_counter()
        with Run().context(RunConfig(nranks=1, root=str(root), experiment="seeds")):
            indexer = Indexer(str(checkpoint), config=ColBERTConfig(nbits=2, doc_maxlen=180), verbose=0)
            path = indexer.index(f"{method}-{seed}", str(SCIFACT / "collection.tsv"), overwrite=True)
            seconds = time.perf_counter() - t
            searcher = Searcher(index=path, checkpoint=str(checkpoint), verbose=0)
            queries = Queries(path=SCIFACT / "queries.tsv")
            ranking = searcher.search_all({str(q): text for q, text in queries.items()}, k=100)
    finally:
        build.train_centroids = original
    run = {str(q): [(str(d), s) for d, _, s in rows] for q, rows in ranking.todict().items()}
    return {"method": method, "seed": seed, "build_seconds": seconds, "kmeans_seconds": indexer.stats.seconds["kmeans"],
            **quality(run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[123, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["lloyd", "fastkmeans"])
    parser.add_argument("--out", default=str(HERE / "results" / "kmeans_seeds.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = ensure_checkpoint()
    WORK.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        for seed in args.seeds:
            for method in args.methods:
                runs.append(build_and_score(checkpoint, Path(tmp), method, seed))
                print(json.dumps(runs[-1]), flush=True)
    summary = {m: {"nDCG@10_median": statistics.median(r["nDCG@10"] for r in runs if r["method"] == m),
                   "nDCG@10_all": [r["nDCG@10"] for r in runs if r["method"] == m],
                   "kmeans_seconds_median": statistics.median(r["kmeans_seconds"] for r in runs if r["method"] == m)}
               for m in args.methods}
    result = {"benchmark": "kmeans_seeds", "collection": "scifact", "nbits": 2, "threads": 2,
              "command": " ".join(["python", "benchmarks/kmeans_seeds.py", *sys.argv[1:]]), "runs": runs,
              "summary": summary}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
