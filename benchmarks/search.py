"""SciFact search: latency, memory and quality of our PLAID search at nbits 2 and 4, and of the reference, in one run.

    python benchmarks/search.py                  # -> benchmarks/results/search.json (and a table on stdout)

Builds (or reuses, under benchmarks/_work/) the MiniLM ColBERT checkpoint of ../shared/compat and indexes of the full
SciFact collection (5,183 documents, its own ids) at nbits 2 and 4. Each index is then measured in a fresh child
process (so peak RSS is search's own): per-query latency (median, p95) of search only (`dense_search` on encoded
queries) and with query encoding (`search(text)`), at k=10 and k=100 with default settings; nDCG@10 and R@100
from qrels.tsv (ir_measures); overlap@10 with our exact mode (exhaustive MaxSim over the decompressed index) and
with exhaustive fp32 MaxSim over uncompressed embeddings (computed once, cached); and a sweep of PLAID settings at
k=10 to find what reaches overlap@10 >= 0.95. With the reference's venv (../shared/reference/setup.sh) the reference
builds its own index of the same collection (ids mapped to 0..N-1) and is timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
SHARED = HERE.parent.parent / "shared"
SCIFACT = SHARED / "data" / "scifact"
SWEEP = [(1, 0.5, 256), (1, 0.5, 512), (2, 0.45, 512), (2, 0.45, 768), (1, 0.5, 1024), (2, 0.45, 1024), (4, 0.4, 4096)]

REFERENCE_SNIPPET = r"""
import json, resource, sys, time, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from colbert import Indexer, Searcher
from colbert.infra import ColBERTConfig, Run, RunConfig
out = {}
with Run().context(RunConfig(nranks=1, root=args["root"], experiment="scifact", avoid_fork_if_possible=True)):
    if args["mode"] == "index":
        t = time.perf_counter()
        Indexer(checkpoint=args["checkpoint"], config=ColBERTConfig(nbits=args["nbits"])).index(
            name=args["name"], collection=args["collection"], overwrite="reuse")
        out["index_seconds_or_reuse"] = time.perf_counter() - t
    qids, texts = zip(*[l.rstrip("\n").split("\t")[:2] for l in open(args["queries"], encoding="utf-8")])
    for k in args["ks"] if args["mode"] == "search" else []:
        s = Searcher(index=args["name"], checkpoint=args["checkpoint"], collection=args["collection"], verbose=0)
        for text in texts[:20]:
            s.search(text, k=k)  # warm-up (and the sticky params of this k: a fresh Searcher per k)
        Qs = [s.encode(text) for text in texts]
        search_only, e2e, run, cpu = [], [], {}, time.process_time()
        for qid, Q in zip(qids, Qs):
            t = time.perf_counter(); pids, _, scores = s.dense_search(Q, k); search_only.append(time.perf_counter() - t)
            run[qid] = [[int(p), float(x)] for p, x in zip(pids, scores)]
        cpu_ms = (time.process_time() - cpu) / len(Qs) * 1e3
        for text in texts:
            t = time.perf_counter(); s.search(text, k=k); e2e.append(time.perf_counter() - t)
        torch.set_num_threads(1)
        one = []
        for Q in Qs:
            t = time.perf_counter(); s.dense_search(Q, k); one.append(time.perf_counter() - t)
        torch.set_num_threads(args["threads"])
        out[f"k{k}"] = {"search_only": search_only, "cpu_ms": cpu_ms, "with_encoding": e2e, "one_thread": one,
                        "run": run}
out["peak_rss_mib"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print("RESULT " + json.dumps(out))
"""


def latency(seconds: list[float]) -> dict:
    ms = sorted(s * 1e3 for s in seconds)
    return {"median_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
            "n": len(ms)}


def overlap_at_10(run: dict, truth: dict) -> float:
    return statistics.mean(len({d for d, _ in run[q][:10]} & set(truth[q][:10])) / 10 for q in truth)


def quality(run: dict) -> dict:
    """nDCG@10 and R@100 of {qid: [(doc id, score), ...]} against SciFact's qrels (colbert.evaluation)."""
    from colbert.evaluation import read_qrels, score_run

    ranked = {q: [(d, rank, s) for rank, (d, s) in enumerate(rows, start=1)] for q, rows in run.items()}
    result = score_run(ranked, read_qrels(SCIFACT / "qrels.tsv"), ["nDCG@10", "R@100"])
    return {"nDCG@10": result["nDCG@10"], "R@100": result["R@100"]}


def ensure_checkpoint() -> Path:
    path = WORK / "minilm-colbert"
    if not (path / "artifact.metadata").exists():
        subprocess.run([sys.executable, str(SHARED / "compat" / "build_checkpoint.py"), str(path)], check=True,
                       capture_output=True)
    return path


def ensure_index(checkpoint: Path, nbits: int) -> tuple[Path, float | None]:
    from colbert import ColBERTConfig, Indexer
    from colbert.index import format as index_format

    root = WORK / "indexes"
    path = root / f"scifact.nbits{nbits}"
    if index_format.is_complete(path):
        return path, None
    start = time.perf_counter()
    config = ColBERTConfig(nbits=nbits)
    Indexer(str(checkpoint), config=config, verbose=1).index(str(path), str(SCIFACT / "collection.tsv"),
                                                             overwrite="reuse")
    return path, time.perf_counter() - start


def ensure_fp32_exact(checkpoint: Path) -> dict[str, list[str]]:
    """Top-100 doc ids per qid by exhaustive MaxSim over uncompressed fp32 embeddings (cached as JSON)."""
    cache = WORK / "exact-fp32-top100.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from colbert import Checkpoint
    from colbert.data import Collection, Queries
    from colbert.kernels import segmented_maxsim

    collection, queries = Collection(path=SCIFACT / "collection.tsv"), Queries(path=SCIFACT / "queries.tsv")
    ckpt = Checkpoint(str(checkpoint), verbose=1)
    D, doclens = ckpt.docFromText(list(collection), keep_dims="flatten")  # (N, d)
    Q = ckpt.queryFromText(list(queries.values()))  # (300, Lq, d)
    lengths, ids = torch.tensor(doclens), [str(collection.id_of(p)) for p in range(len(collection))]
    out = {}
    for qid, q in zip(queries.keys(), Q):
        top = segmented_maxsim(D @ q.T, lengths).topk(100).indices.tolist()
        out[str(qid)] = [ids[p] for p in top]
    cache.write_text(json.dumps(out))
    return out


def measure(index: str, checkpoint: str, threads: int, exact_fp32: str, sweep: bool) -> dict:
    """Runs in a child process: everything about one index."""
    torch.set_num_threads(threads)
    from colbert import Searcher
    from colbert.data import Queries

    queries = Queries(path=SCIFACT / "queries.tsv")
    qids, texts = [str(q) for q in queries.keys()], list(queries.values())
    start = time.perf_counter()
    searcher = Searcher(index, checkpoint=checkpoint, verbose=0)
    out: dict = {"open_seconds": time.perf_counter() - start, "rss_after_open_mib": peak_rss_mib()}
    Q = searcher.encode(texts)

    def run_all(k: int) -> dict:
        for q in Q[:20]:
            searcher.dense_search(q[None], k)  # warm-up: page in the memory-mapped index
        seconds, run, cpu = [], {}, time.process_time()
        for qid, q in zip(qids, Q):
            t = time.perf_counter()
            ids, _, scores = searcher.dense_search(q[None], k)
            seconds.append(time.perf_counter() - t)
            run[qid] = [(str(d), s) for d, s in zip(ids, scores)]
        return {"search_only": {**latency(seconds), "cpu_ms_per_query": (time.process_time() - cpu) / len(Q) * 1e3},
                "run": run}

    for k in (10, 100):
        out[f"k{k}"] = run_all(k)
        e2e = []
        for text in texts:
            t = time.perf_counter()
            searcher.search(text, k=k)
            e2e.append(time.perf_counter() - t)
        out[f"k{k}"]["with_encoding"] = latency(e2e)
        torch.set_num_threads(1)  # the same search on one thread: a busy machine's other cores do not help
        out[f"k{k}"]["search_only_1_thread"] = run_all(k)["search_only"]
        torch.set_num_threads(threads)
    if sweep:
        out["sweep_k10"] = []
        for ncells, threshold, ndocs in SWEEP:
            searcher.configure(ncells=ncells, centroid_score_threshold=threshold, ndocs=ndocs)
            out["sweep_k10"].append({"ncells": ncells, "centroid_score_threshold": threshold, "ndocs": ndocs,
                                     **run_all(10)})
        searcher.configure(ncells=None, centroid_score_threshold=None, ndocs=None)
    out["peak_rss_mib"] = peak_rss_mib()  # PLAID search; exact mode below decompresses blocks of the index
    start = time.perf_counter()
    exact = searcher.search_all(dict(zip(qids, texts)), k=100, exact=True)
    out["exact_mode"] = {"seconds_per_query": (time.perf_counter() - start) / len(qids),
                         "run": {q: [(str(r[0]), r[2]) for r in rows] for q, rows in exact.items()}}
    out["peak_rss_with_exact_mode_mib"] = peak_rss_mib()
    exact_top = {q: [d for d, _ in rows] for q, rows in out["exact_mode"]["run"].items()}
    fp32_top = json.loads(Path(exact_fp32).read_text())
    for entry in [out["k10"], out["k100"], out["exact_mode"], *out.get("sweep_k10", [])]:
        run = entry.pop("run")
        entry.update(quality(run))
        entry["overlap@10_vs_exact_mode"] = overlap_at_10(run, exact_top)
        entry["overlap@10_vs_exact_fp32"] = overlap_at_10(run, fp32_top)
    return out


def peak_rss_mib() -> float:
    """VmHWM of this process. Not ru_maxrss: Linux carries that over exec, so a child would report the peak of the
    parent that forked it (which may have just built an index)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def reference_collection() -> tuple[Path, list[str]]:
    """SciFact with pids 0..N-1 (what colbert-ai wants) and the doc id of each pid."""
    ref_dir = WORK / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    collection, ids = ref_dir / "collection-0based.tsv", []
    with open(SCIFACT / "collection.tsv", encoding="utf-8") as f, open(collection, "w", encoding="utf-8") as out:
        for pid, line in enumerate(f):
            doc_id, text = line.rstrip("\n").split("\t", 1)
            ids.append(doc_id)
            out.write(f"{pid}\t{text}\n")
    return collection, ids


def call_reference(python: str, mode: str, checkpoint: Path, nbits: int, threads: int) -> dict:
    """Run REFERENCE_SNIPPET in the reference's venv: mode 'index' builds (or reuses) its index, 'search' times it."""
    collection, _ = reference_collection()
    args = {"threads": threads, "root": str(WORK / "reference"), "checkpoint": str(checkpoint), "nbits": nbits,
            "name": f"scifact.nbits{nbits}", "collection": str(collection), "queries": str(SCIFACT / "queries.tsv"),
            "ks": [10, 100], "mode": mode}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TORCH_EXTENSIONS_DIR": str(WORK / "reference" / "torch_extensions")}
    with tempfile.TemporaryDirectory() as cwd:  # colbert-ai reads git metadata of its working directory
        proc = subprocess.run([python, "-c", REFERENCE_SNIPPET, json.dumps(args)], capture_output=True, text=True,
                              env=env, cwd=cwd)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the reference failed ({mode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_reference(python: str, checkpoint: Path, nbits: int, threads: int, fp32_top: dict) -> dict:
    if not Path(python).exists():
        return {"skipped": f"no reference venv at {python} (bash ../shared/reference/setup.sh)"}
    try:  # separate processes, so that the search's peak RSS is its own
        built = call_reference(python, "index", checkpoint, nbits, threads)
        raw = call_reference(python, "search", checkpoint, nbits, threads)
    except RuntimeError as e:
        return {"failed": str(e)}
    _, ids = reference_collection()
    out = {"peak_rss_mib": raw["peak_rss_mib"], "index_seconds_or_reuse": built["index_seconds_or_reuse"]}
    for k in (10, 100):
        run = {q: [(ids[p], s) for p, s in rows] for q, rows in raw[f"k{k}"]["run"].items()}
        out[f"k{k}"] = {"search_only": {**latency(raw[f"k{k}"]["search_only"]), "cpu_ms_per_query":
                                        raw[f"k{k}"]["cpu_ms"]},
                        "with_encoding": latency(raw[f"k{k}"]["with_encoding"]),
                        "search_only_1_thread": latency(raw[f"k{k}"]["one_thread"]), **quality(run),
                        "overlap@10_vs_exact_fp32": overlap_at_10(run, fp32_top)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nbits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reference-python", default=os.path.expanduser("~/.cache/colbert-reference/venv/bin/python"))
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--build-only", action="store_true", help="build the cached indexes and exact top-100, stop")
    parser.add_argument("--out", default=str(HERE / "results" / "search.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: JSON args of measure() in a fresh process
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(**json.loads(args.child))))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    checkpoint = ensure_checkpoint()
    result: dict = {"benchmark": "search", "collection": "scifact (5,183 docs, 300 queries)", "threads": args.threads,
                    "torch": torch.__version__, "device": "cpu", "load_average_at_start": os.getloadavg(), "ours": {}}
    indexes = {nbits: ensure_index(checkpoint, nbits) for nbits in args.nbits}
    fp32_top = ensure_fp32_exact(checkpoint)
    if args.build_only:
        print(json.dumps({n: [str(p), s] for n, (p, s) in indexes.items()}))
        return
    from colbert.kernels import backend_info

    result["kernels"] = backend_info()["source"]
    for nbits, (path, build_seconds) in indexes.items():
        child = json.dumps({"index": str(path), "checkpoint": str(checkpoint), "threads": args.threads,
                            "exact_fp32": str(WORK / "exact-fp32-top100.json"), "sweep": nbits == 2})
        proc = subprocess.run([sys.executable, __file__, "--child", child], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"measuring {path} failed:\n{proc.stderr[-3000:]}")
        result["ours"][f"nbits{nbits}"] = {"index_build_seconds": build_seconds, **json.loads(lines[-1][7:])}
    if not args.skip_reference:
        result["reference"] = {f"nbits{n}": run_reference(args.reference_python, checkpoint, n, args.threads,
                                                          fp32_top) for n in args.nbits[:1]}
    result["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


def print_table(result: dict) -> None:
    rows = [(f"ours nbits={n[5:]}", r) for n, r in result["ours"].items()]
    rows += [(f"reference nbits={n[5:]}", r) for n, r in result.get("reference", {}).items() if "k10" in r]
    print(f"{'':22} {'k':>4} {'search ms':>9} {'p95':>7} {'cpu ms':>7} {'1-thr ms':>8} {'+encode':>8} "
          f"{'nDCG@10':>8} {'R@100':>6} {'ov@10 fp32':>10} {'ov@10 exact':>11} {'RSS MiB':>8}")
    for name, r in rows:
        for k in (10, 100):
            m = r[f"k{k}"]
            so = m["search_only"]
            print(f"{name:22} {k:>4} {so['median_ms']:>9.2f} {so['p95_ms']:>7.2f} {so['cpu_ms_per_query']:>7.2f} "
                  f"{m['search_only_1_thread']['median_ms']:>8.2f} {m['with_encoding']['median_ms']:>8.2f} "
                  f"{m['nDCG@10']:>8.4f} {m['R@100']:>6.3f} {m['overlap@10_vs_exact_fp32']:>10.3f} "
                  f"{m.get('overlap@10_vs_exact_mode', float('nan')):>11.3f} {r['peak_rss_mib']:>8.0f}")
    for s in result["ours"].get("nbits2", {}).get("sweep_k10", []):
        print(f"sweep k=10 ncells={s['ncells']} threshold={s['centroid_score_threshold']} ndocs={s['ndocs']}: "
              f"{s['search_only']['median_ms']:.2f} ms, overlap@10 vs exact mode {s['overlap@10_vs_exact_mode']:.3f}, "
              f"vs fp32 {s['overlap@10_vs_exact_fp32']:.3f}")
    print(f"load average at start {result['load_average_at_start']}, at end {result['load_average_at_end']}")


if __name__ == "__main__":
    main()
