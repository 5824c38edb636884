"""The centroid screen's matmul, int8 against bf16: SciFact encoded once, then in interleaved rounds k-means on the
build's sample size and the codes of every embedding, once with each screen, on CPU.

    python benchmarks/screen.py          # -> benchmarks/results/screen.json

Both screens give the float32 codes (`colbert.index.assign.nearest_centroids`): the run checks that the two
agree on every code and on the centroids. Per round and screen: k-means seconds (`train_centroids`, 2^18 points,
8,192 centroids, 4 iterations) and the seconds to assign all embeddings to the resulting centroids; the summary
gives the medians. Needs a CPU with native bf16 (else indexing uses neither screen).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from search import SCIFACT, ensure_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "screen.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from colbert import ColBERTConfig
    from colbert.data import Collection
    from colbert.index import assign
    from colbert.indexing import kmeans
    from colbert.indexing.encoder import encode_passages
    from colbert.index.codec import draw_codec_sample
    from colbert.infra.device import indexing_uses_bf16
    from colbert.modeling.checkpoint import Checkpoint

    config = ColBERTConfig(doc_maxlen=180)
    if not indexing_uses_bf16(config, torch.device("cpu")):
        sys.exit("this CPU has no native bf16: indexing uses the fp32 matmul, not a screen")
    if not assign.int8_matmul_available():
        sys.exit("this torch has no int8 CPU matmul (torch._int_mm)")
    checkpoint = Checkpoint(str(ensure_checkpoint()), colbert_config=config, verbose=0)
    embeddings, _ = encode_passages(checkpoint, Collection(path=SCIFACT / "collection.tsv").data,
                                    config.index_bsize, show_progress=False, bf16=True)
    drawn = draw_codec_sample(embeddings.size(0), embeddings.size(0))  # the build's k-means sample of them all
    num_partitions = drawn.num_partitions
    sample = embeddings[drawn.kmeans]  # in collection order, as the build has it

    int8_available = assign.int8_matmul_available
    runs, outputs = [], {}
    for round_ in range(args.rounds):
        for screen in ("int8", "bf16"):
            assign.int8_matmul_available = int8_available if screen == "int8" else (lambda: False)
            try:
                t = time.perf_counter()
                centroids = kmeans.train_centroids(sample, num_partitions, config.kmeans_niters,
                                                   torch.device("cpu"), bf16=True)
                t1 = time.perf_counter()
                codes = assign.nearest_centroids(embeddings, centroids, bf16=True)
                t2 = time.perf_counter()
            finally:
                assign.int8_matmul_available = int8_available
            outputs[screen] = (centroids, codes)
            runs.append({"round": round_, "screen": screen, "kmeans_seconds": t1 - t, "assign_seconds": t2 - t1})
            print(json.dumps(runs[-1]), flush=True)
    (c8, k8), (c16, k16) = outputs["int8"], outputs["bf16"]
    summary = {screen: {f"{what}_seconds_median": statistics.median(r[f"{what}_seconds"] for r in runs
                                                                     if r["screen"] == screen)
                        for what in ("kmeans", "assign")} for screen in ("int8", "bf16")}
    summary["same_centroids"] = bool(torch.equal(c8, c16))
    summary["codes_that_differ"] = int((k8 != k16).sum())
    result = {"benchmark": "screen", "collection": "scifact", "num_embeddings": embeddings.size(0),
              "num_partitions": num_partitions,
              "sample": int(sample.size(0)), "kmeans_niters": config.kmeans_niters, "threads": args.threads,
              "command": " ".join(["python", "benchmarks/screen.py", *sys.argv[1:]]), "runs": runs,
              "summary": summary}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
