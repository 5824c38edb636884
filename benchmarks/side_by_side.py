"""Two checkouts of colbert side by side: the same index files byte for byte, the same rankings, and build and search
times in interleaved rounds (for a refactoring that must change nothing, on a machine others share).

    python benchmarks/side_by_side.py --checkouts /tmp/main-checkout . --docs 1000 --queries 300 --rounds 2
    # -> benchmarks/results/side_by_side.json

Each round builds an index of the first `--docs` passages of ../shared/data/scifact/collection.tsv (MiniLM ColBERT
checkpoint of ../shared/compat, nbits 2, doc_maxlen 180) in a fresh process of each checkout in turn (its own
`colbert` first on sys.path), then searches the first `--queries` queries (k=10, after one warm-up query). Times are
wall seconds of that child; medians per checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
SCIFACT = SHARED / "data" / "scifact"


def checkpoint(work: Path) -> Path:
    out = work / "minilm"
    if not (out / "artifact.metadata").exists():
        subprocess.run([sys.executable, str(SHARED / "compat" / "build_checkpoint.py"), str(out)], check=True,
                       capture_output=True)
    return out


def enter_checkout(checkout: str, threads: int) -> None:
    """Make `import colbert` this checkout's (benchmarks/ off sys.path: its modules could shadow installed packages),
    check it is, and set torch's threads. Call before importing colbert."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, checkout)
    import torch

    import colbert

    if not colbert.__file__.startswith(checkout):
        raise RuntimeError(f"imported {colbert.__file__}, not the checkout {checkout}")
    torch.set_num_threads(threads)


def child(args: dict) -> dict:
    """Runs inside one checkout: build, search, hash."""
    enter_checkout(args["checkout"], args["threads"])
    from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher

    lines = Path(SCIFACT / "collection.tsv").read_text(encoding="utf-8").splitlines()[:args["docs"]]
    collection = dict(line.split("\t", 1) for line in lines)
    queries = dict(line.split("\t", 1) for line in
                   Path(SCIFACT / "queries.tsv").read_text(encoding="utf-8").splitlines()[:args["queries"]])
    with Run().context(RunConfig(nranks=1, root=args["root"], experiment="sbs")):
        t = time.perf_counter()
        path = Indexer(args["checkpoint"], config=ColBERTConfig(nbits=2, doc_maxlen=180), verbose=0).index(
            "idx", collection, overwrite=True)
        build = time.perf_counter() - t
        searcher = Searcher(path, verbose=0)
        searcher.search("warm up", k=10)
        t = time.perf_counter()
        rankings = {qid: searcher.search(text, k=10) for qid, text in queries.items()}
        search = time.perf_counter() - t
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(path).iterdir()) if p.is_file()}
    ranked = hashlib.sha256(json.dumps({q: [r[0], r[2]] for q, r in rankings.items()}).encode()).hexdigest()
    return {"build_seconds": build, "search_seconds": search, "files": files, "rankings": ranked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", nargs=2, metavar=("BASELINE", "CANDIDATE"), help="required")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "side_by_side.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not args.checkouts:
        parser.error("--checkouts BASELINE CANDIDATE is required")
    work = Path(tempfile.mkdtemp(prefix="sbs-"))
    ckpt = checkpoint(work)
    runs = []
    for round_ in range(args.rounds):
        for name, checkout in zip(("baseline", "candidate"), args.checkouts):
            spec = {"checkout": str(Path(checkout).resolve()), "root": str(work / f"{name}-{round_}"),
                    "checkpoint": str(ckpt), "docs": args.docs, "queries": args.queries, "threads": args.threads}
            env = {**os.environ, "PYTHONPATH": spec["checkout"]}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                                 capture_output=True, text=True, cwd=spec["checkout"])
            if out.returncode:
                raise RuntimeError(f"{name} ({checkout}) failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append({"round": round_, "checkout": name, **result})
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "files"}), flush=True)
    by = {name: [r for r in runs if r["checkout"] == name] for name in ("baseline", "candidate")}
    summary = {
        "checkouts": dict(zip(("baseline", "candidate"), args.checkouts)), "docs": args.docs,
        "queries": args.queries, "rounds": args.rounds, "threads": args.threads,
        "same_files": all(r["files"] == runs[0]["files"] for r in runs),
        "same_rankings": all(r["rankings"] == runs[0]["rankings"] for r in runs),
        **{f"{name}_{what}_median": statistics.median(r[f"{what}_seconds"] for r in by[name])
           for name in by for what in ("build", "search")},
    }
    if not summary["same_files"]:
        first = runs[0]["files"]
        summary["differing_files"] = sorted({f for r in runs for f in set(r["files"]) ^ set(first)} |
                                            {f for r in runs for f in r["files"] if r["files"].get(f) != first.get(f)})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "runs": [{k: v for k, v in r.items() if k != "files"}
                                                                       for r in runs]}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
