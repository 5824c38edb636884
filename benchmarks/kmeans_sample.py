"""The k-means sample size against k-means time and the IVF's size: SciFact encoded once, then centroids from samples
of several sizes and seeds, every embedding assigned to them, and the inverted lists built as the index would.

    python benchmarks/kmeans_sample.py          # -> benchmarks/results/kmeans_sample.json

`ivf.pid.pt` holds one int32 per distinct (centroid, passage) pair, plus padding (the longest list's length), so
the index's bytes per embedding follow where the centroids fall. The build clusters at most 2^18 points
(`colbert.indexing.plan.KMEANS_MAX_POINTS`); the reference clusters every sampled embedding (on SciFact all of them
but the 5 % held out). Per run: k-means seconds (`lloyd`, 4 iterations, bf16 when the CPU has it, 2 threads),
pairs, padding, the IVF's int32 entries, and the mean cosine of each embedding to its centroid.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from search import SCIFACT, ensure_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["262144", "524288", "all"],
                        help="sample sizes in points, or 'all' (every embedding but the held-out ones)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[12345, 1], help="seeds of the sample draw")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "kmeans_sample.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from colbert import ColBERTConfig
    from colbert.data import Collection
    from colbert.indexing.encoder import encode_passages
    from colbert.index.ivf import build_ivf
    from colbert.index.assign import nearest_centroids, train_centroids
    from colbert.indexing.plan import HELDOUT_FRACTION, HELDOUT_MAX, num_partitions_for
    from colbert.infra.device import indexing_uses_bf16
    from colbert.modeling.checkpoint import Checkpoint

    config = ColBERTConfig(doc_maxlen=180)
    checkpoint = Checkpoint(str(ensure_checkpoint()), colbert_config=config, verbose=0)
    bf16 = indexing_uses_bf16(config, torch.device("cpu"))
    t = time.perf_counter()
    embeddings, doclens = encode_passages(checkpoint, Collection(path=SCIFACT / "collection.tsv").data,
                                          config.index_bsize, show_progress=False, bf16=bf16)
    encode_seconds = time.perf_counter() - t
    n = embeddings.size(0)
    num_partitions = num_partitions_for(n)
    heldout = int(min(HELDOUT_FRACTION * n, HELDOUT_MAX))
    runs = []
    for size in args.sizes:
        for seed in args.seeds:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[heldout:]
            points = order if size == "all" else order[:int(size)]
            sample = embeddings[points.sort().values]  # in collection order, as the build gathers it
            t = time.perf_counter()
            centroids = train_centroids(sample, num_partitions, config.kmeans_niters, torch.device("cpu"), bf16=bf16)
            seconds = time.perf_counter() - t
            del sample
            codes = nearest_centroids(embeddings, centroids, bf16=bf16)
            ivf, lengths = build_ivf(codes, torch.tensor(doclens), num_partitions)
            cosine = sum(float((block.float() * centroids[c.long()].float()).sum()) for block, c in
                         zip(F.normalize(embeddings.float(), dim=-1).split(1 << 16), codes.split(1 << 16))) / n
            runs.append({"sample": int(points.numel()), "size": size, "seed": seed, "kmeans_seconds": seconds,
                         "ivf_pairs": int(lengths.sum()), "ivf_padding": int(ivf.numel() - lengths.sum()),
                         "ivf_entries": int(ivf.numel()), "mean_cosine_to_centroid": cosine})
            print(json.dumps(runs[-1]), flush=True)
    summary = {size: {"kmeans_seconds_median": statistics.median(r["kmeans_seconds"] for r in runs if r["size"] == size),
                      "ivf_entries_median": statistics.median(r["ivf_entries"] for r in runs if r["size"] == size),
                      "ivf_entries_all": [r["ivf_entries"] for r in runs if r["size"] == size]}
               for size in args.sizes}
    result = {"benchmark": "kmeans_sample", "collection": "scifact", "num_embeddings": n,
              "num_partitions": num_partitions, "heldout": heldout, "kmeans_niters": config.kmeans_niters,
              "bf16": bf16, "threads": args.threads, "encode_seconds": encode_seconds,
              "command": " ".join(["python", "benchmarks/kmeans_sample.py", *sys.argv[1:]]), "runs": runs,
              "summary": summary}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
