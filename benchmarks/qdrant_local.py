"""Qdrant backend in qdrant-client's local mode: ingest rate, query latency, bytes per document, side by side with
the local PLAID index it was exported from.

    python benchmarks/qdrant_local.py          # -> benchmarks/results/qdrant_local.json

Local mode is pure Python (numpy brute force over every document), meant for tests and small data: its figures
are no reference for a Qdrant server's speed. Data: the reference-built 1,000-passage SciFact index
(../shared/compat/index-scifact1k-nbits2), MiniLM ColBERT checkpoint, the 300 SciFact queries (first --queries).

Reported: export rate (documents/s: decompress + upsert) into an in-memory and an on-disk (path=) local collection;
median query latency (ms, query already encoded) of Qdrant local mode, with numpy's BLAS at its default threads
and at one thread (threadpoolctl), and of our exact and PLAID search on the same queries; bytes per document of the
PLAID index folder, of the on-disk local collection, and of the raw float32 multivectors a server holds (plus one
byte per dimension with int8 scalar quantization, which keeps the originals too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
COMPAT = SHARED / "compat"
INDEX = COMPAT / "index-scifact1k-nbits2"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1, user_api="blas")


def latencies(fn, encoded) -> list[float]:
    out = []
    for Q in encoded:
        start = time.perf_counter()
        fn(Q)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", default=str(HERE / "results" / "qdrant_local.json"))
    args = parser.parse_args()
    checkpoint = args.checkpoint or tempfile.mkdtemp(prefix="minilm-colbert-")
    if args.checkpoint is None:
        subprocess.run([sys.executable, str(COMPAT / "build_checkpoint.py"), checkpoint], check=True,
                       capture_output=True)

    from qdrant_client import QdrantClient

    from colbert import Searcher
    from colbert.backends.qdrant import QdrantIndex

    searcher = Searcher(str(INDEX), checkpoint=checkpoint, verbose=0)
    n, embeddings = searcher.loaded.num_passages, searcher.loaded.num_embeddings
    collection = COMPAT / "collection-scifact1k.tsv"
    result: dict = {"benchmark": "qdrant_local", "passages": n, "embeddings": embeddings,
                    "dim": searcher.loaded.dim, "nbits": searcher.loaded.nbits,
                    "note": "qdrant-client local mode is pure Python: not a reference for a Qdrant server's speed"}
    work = Path(tempfile.mkdtemp(prefix="qdrant-local-"))
    stores = {}
    for mode in ("memory", "disk"):
        client = QdrantClient(":memory:") if mode == "memory" else QdrantClient(path=str(work / "qdrant"))
        start = time.perf_counter()
        stores[mode] = QdrantIndex.from_index(INDEX, client, "scifact", checkpoint=searcher.checkpoint,
                                              collection=collection)
        seconds = time.perf_counter() - start
        result[f"ingest_{mode}"] = {"seconds": seconds, "docs_per_s": n / seconds}
    plaid_bytes = folder_bytes(INDEX)
    disk_bytes = folder_bytes(work / "qdrant")
    raw = embeddings * searcher.loaded.dim * 4
    result["bytes_per_document"] = {
        "plaid_index": plaid_bytes / n, "qdrant_local_on_disk": disk_bytes / n,
        "float32_multivectors": raw / n,
        "float32_plus_int8_scalar_quantization": (raw + embeddings * searcher.loaded.dim) / n,
        "avg_doclen": embeddings / n,
    }
    texts = [line.split("\t", 1)[1] for line in
             (SHARED / "data/scifact/queries.tsv").read_text().splitlines()][: args.queries]
    encoded = searcher.encode(texts)
    store = stores["memory"]
    timings = {"qdrant_local_default_blas": latencies(lambda Q: store.dense_search(Q, 10), encoded)}
    limit = one_thread()
    if limit is not None:
        with limit:
            timings["qdrant_local_one_blas_thread"] = latencies(lambda Q: store.dense_search(Q, 10), encoded)
    timings["ours_exact"] = latencies(lambda Q: searcher.dense_search(Q, 10, exact=True), encoded)
    timings["ours_plaid"] = latencies(lambda Q: searcher.dense_search(Q, 10), encoded)
    result["query_latency_ms_median"] = {k: 1000 * statistics.median(v) for k, v in timings.items()}
    result["queries"] = len(texts)
    for s in stores.values():
        with contextlib.suppress(Exception):
            s.client.close()
    shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
