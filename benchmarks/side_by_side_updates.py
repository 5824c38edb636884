"""Two checkouts of colbert side by side on the same index edits: the same files after every persist, the same
search results before it, and search times on the edited index (for a refactoring of the editor that must change
nothing, on a machine others share).

    python benchmarks/side_by_side_updates.py --checkouts /tmp/main-checkout . --docs 300 --rounds 3
    # -> benchmarks/results/side_by_side_updates.json

The index (the first `--docs` SciFact passages, MiniLM ColBERT checkpoint of ../shared/compat, nbits 2, doc_maxlen
180, chunks of docs / 3 passages) is built once by the baseline; every round copies it for each checkout in turn
and runs, in a fresh process of that checkout (its own `colbert` first on sys.path; COLBERT_KERNELS=`--kernels`:
pass `reference` when a native build might fall back in one of them, since files compare only between runs on the
same kernel tier): add docs / 3 (string ids), remove every 8th passage and a few
added ones, search, persist; add more, remove more, search, persist; add two texts and reindex, search. Files are
compared by SHA-256 (metadata.json and plan.json without the run's root). Search times: `dense_search` with the
queries encoded beforehand (k=10), each query's median over 3 passes, summed, in wall seconds and in CPU seconds of
the process (less sensitive to other work on a shared machine); on the index edited in memory (edits pending) and
after the first persist; medians over rounds per checkout, which take turns at running first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
SCIFACT = SHARED / "data" / "scifact"

from side_by_side import checkpoint, enter_checkout  # noqa: E402 (benchmarks/ is on sys.path: run as a script)
QUERIES = 100


def digest(index_dir: Path) -> dict:
    """SHA-256 of every file; metadata.json and plan.json without the config's root (the run's folder)."""
    out = {}
    for path in sorted(p for p in index_dir.iterdir() if p.is_file()):
        data = path.read_bytes()
        if path.name in ("metadata.json", "plan.json"):
            meta = json.loads(data)
            meta.get("config", {}).pop("root", None)
            data = json.dumps(meta, sort_keys=True).encode()
        out[path.name] = hashlib.sha256(data).hexdigest()
    return out


def child(args: dict) -> dict:
    """Runs inside one checkout: build (baseline only), or edit, search and hash."""
    enter_checkout(args["checkout"], args["threads"])
    from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, Searcher
    from colbert.indexing import plan as index_plan

    n = args["docs"]
    index_plan.CHUNK_EMBEDDINGS_BUDGET = max(1, n // 3) * 180  # chunks of n / 3 passages, built and added
    lines = (SCIFACT / "collection.tsv").read_text(encoding="utf-8").splitlines()[: 2 * n]
    texts = [line.split("\t", 1)[1] for line in lines]
    if args["mode"] == "build":
        with Run().context(RunConfig(nranks=1, root=args["root"], experiment="sbsu")):
            return {"path": Indexer(args["checkpoint"], config=ColBERTConfig(nbits=2, doc_maxlen=180),
                                    verbose=0).index("idx", {f"d{i}": texts[i] for i in range(n)}, overwrite=True)}
    queries = [line.split("\t", 1)[1] for line in
               (SCIFACT / "queries.tsv").read_text(encoding="utf-8").splitlines()[:QUERIES]]
    index = Path(args["index"])
    searcher = Searcher(str(index), checkpoint=args["checkpoint"], verbose=0)
    updater = IndexUpdater(searcher=searcher)
    Qs = [searcher.encode(q) for q in queries]
    out: dict = {}

    def search(tag: str) -> None:
        results = [searcher.dense_search(Q, k=10) for Q in Qs] + [searcher.dense_search(Q, k=5, exact=True)
                                                                   for Q in Qs[:10]]
        out[f"{tag}_results"] = hashlib.sha256(json.dumps(results).encode()).hexdigest()

    def timed(tag: str) -> None:
        wall, cpu = [[] for _ in Qs], [[] for _ in Qs]
        for _ in range(3):
            for i, Q in enumerate(Qs):
                t, c = time.perf_counter(), time.process_time()
                searcher.dense_search(Q, k=10)
                wall[i].append(time.perf_counter() - t)
                cpu[i].append(time.process_time() - c)
        out[f"{tag}_seconds"] = sum(statistics.median(t) for t in wall)
        out[f"{tag}_cpu_seconds"] = sum(statistics.median(t) for t in cpu)

    third = max(1, n // 3)
    updater.add({f"a{i}": texts[i] for i in range(n, n + third)})
    updater.remove([f"d{i}" for i in range(0, n, 8)] + [f"a{i}" for i in range(n, n + third, 40)])
    search("edit1")
    timed("pending")
    updater.persist_to_disk()
    out["persist1_files"] = digest(index)
    timed("persisted")
    updater.add({f"b{i}": texts[i] for i in range(n + third, n + 2 * third)})
    updater.remove([f"a{i}" for i in range(n + 1, n + third, 9) if (i - n) % 40]
                   + [f"d{i}" for i in range(3, n, 17) if i % 8])
    search("edit2")
    updater.persist_to_disk()
    out["persist2_files"] = digest(index)
    updater.add(["plain text one", "plain text two"])
    updater.reindex(kmeans_niters=2)
    out["reindex_files"] = digest(index)
    search("reindex")
    return out


def run_child(spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": spec["checkout"], "COLBERT_KERNELS": spec["kernels"]}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                         text=True, cwd=spec["checkout"])
    if out.returncode:
        raise RuntimeError(f"{spec['checkout']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", nargs=2, metavar=("BASELINE", "CANDIDATE"), help="required")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kernels", default="auto", choices=("auto", "native", "reference"))
    parser.add_argument("--out", default=str(HERE / "results" / "side_by_side_updates.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not args.checkouts:
        parser.error("--checkouts BASELINE CANDIDATE is required")
    work = Path(tempfile.mkdtemp(prefix="sbsu-"))
    common = {"checkpoint": str(checkpoint(work)), "docs": args.docs, "threads": args.threads, "kernels": args.kernels}
    checkouts = [str(Path(c).resolve()) for c in args.checkouts]
    built = Path(run_child({**common, "checkout": checkouts[0], "mode": "build", "root": str(work / "root")})["path"])
    runs = []
    for round_ in range(args.rounds):
        order = list(zip(("baseline", "candidate"), checkouts))
        for name, checkout in order if round_ % 2 == 0 else order[::-1]:  # neither always runs second
            index = work / f"{name}-{round_}"
            shutil.copytree(built, index)
            result = run_child({**common, "checkout": checkout, "mode": "edit", "index": str(index)})
            runs.append({"round": round_, "checkout": name, **result})
            print(json.dumps({k: v for k, v in runs[-1].items() if not k.endswith("_files")}), flush=True)
            shutil.rmtree(index)
    outcomes = [k for k in runs[0] if k.endswith(("_files", "_results"))]
    summary = {
        "checkouts": dict(zip(("baseline", "candidate"), args.checkouts)), "docs": args.docs,
        "queries": QUERIES, "rounds": args.rounds, "threads": args.threads, "kernels": args.kernels,
        **{f"same_{k}": all(r[k] == runs[0][k] for r in runs) for k in outcomes},
        **{f"{name}_{what}_median": statistics.median(r[f"{what}_seconds"] for r in runs if r["checkout"] == name)
           for name in ("baseline", "candidate") for what in ("pending", "persisted", "pending_cpu", "persisted_cpu")},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "runs": [
        {k: v for k, v in r.items() if not k.endswith("_files")} for r in runs]}, indent=2))
    print(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
