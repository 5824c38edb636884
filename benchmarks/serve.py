"""`colbert serve` under load on loopback: throughput, latency, errors, writes kept, memory; and the in-process
Searcher on the same requests in the same run.

    python benchmarks/serve.py                                   # -> benchmarks/results/serve.json
    python benchmarks/serve.py --inprocess-s 10 --read-s 10 --mixed-s 30 --clients 16   # shorter

Builds (or reuses, under benchmarks/_work/, as benchmarks/search.py does) the MiniLM ColBERT checkpoint and the
SciFact index (nbits 2), copies the index (the writer changes it), then, one after the other:
  1. in-process: a child process runs the requests one at a time through `Searcher` (search: `search(text, k)`;
     rerank: `search(text, k, pids=candidates)`, the exact MaxSim over stored embeddings the server's rerank by
     doc_ids computes) for `--inprocess-s` seconds: requests per second;
  2. the server (`python -m colbert serve`, 127.0.0.1, a free port) with `--clients` concurrent clients sending the
     same requests for `--read-s` seconds (no writer): QPS, p50/p99, and QPS as a share of the in-process figure;
  3. the same for `--mixed-s` seconds while a writer adds `--write-docs` SciFact passages under new ids in commits
     of `--write-batch`, then removes them: 5xx count, each commit's document count, the final set of ids (read
     back from the server and from disk) against the expected one, the server's RSS (VmRSS) before the first
     write, after each commit and at the end: growth is counted from the first commit (which allocates once what
     later commits reuse: the index's editable copy, the write thread's encoder buffers), that step beside it; and
     VmRSS and RssAnon sampled every 0.5 s through the phase (their maximum against the first commit).
Requests alternate: search (k=10, a SciFact query) and rerank by doc_ids (that query's 100 BM25 candidates).
The server encodes every query in fp32 (`--query-precision fp32 --rerank-precision fp32`), as the in-process
Searcher does, so both sides do the same work; `--rerank-precision auto` runs the server's own default instead.
The clients run in this process (asyncio + httpx) and share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import importlib.util

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# benchmarks/ must not be on sys.path: its modules could shadow installed packages (transformers probes for `kernels`)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != HERE]
_spec = importlib.util.spec_from_file_location("search_bench", HERE / "search.py")
search_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(search_bench)  # ensure_checkpoint, ensure_index, SCIFACT, WORK

SCIFACT = search_bench.SCIFACT
WORK = search_bench.WORK


def load_requests(n_candidates: int, collection_path: Path = SCIFACT / "collection.tsv") -> list[dict]:
    """One search and one rerank request per SciFact query (its BM25 top-n as candidates)."""
    from colbert.data import Collection, Queries
    from colbert.training.bm25 import BM25

    tag = "" if collection_path == SCIFACT / "collection.tsv" else f"-{collection_path.stem}"
    cache = WORK / f"bm25-top{n_candidates}{tag}.json"
    queries = Queries(path=SCIFACT / "queries.tsv")
    if cache.exists():
        candidates = json.loads(cache.read_text())
    else:
        collection = Collection(path=collection_path)
        bm25 = BM25(list(collection))
        candidates = {str(qid): [collection.id_of(p) for p in bm25.search(text, n_candidates)]
                      for qid, text in queries.items()}
        cache.write_text(json.dumps(candidates))
    out = []
    for qid, text in queries.items():
        out.append({"kind": "search", "body": {"query": text, "k": 10}})
        out.append({"kind": "rerank", "body": {"query": text, "doc_ids": candidates[str(qid)], "k": 10}})
    return out


def percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))]}


# ------------------------------------------------------------------------------------------------ in process


def inprocess(index: str, requests: list[dict], seconds: float, threads: int) -> dict:
    """Child process: the same requests, one at a time, through Searcher."""
    import torch

    torch.set_num_threads(threads)
    from colbert import Searcher

    searcher = Searcher(index, verbose=0)
    for r in requests[:20]:  # warm-up
        run_inprocess(searcher, r)
    done, latencies, start = 0, [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        r = requests[done % len(requests)]
        t = time.perf_counter()
        run_inprocess(searcher, r)
        latencies.append((time.perf_counter() - t) * 1e3)
        done += 1
    elapsed = time.perf_counter() - start
    return {"requests": done, "seconds": elapsed, "qps": done / elapsed, **percentiles(latencies)}


def run_inprocess(searcher, request: dict) -> None:
    body = request["body"]
    if request["kind"] == "search":
        searcher.search(body["query"], k=body["k"])
    else:
        searcher.search(body["query"], k=body["k"], pids=body["doc_ids"])


# ------------------------------------------------------------------------------------------------ the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


class RssSampler:
    """The server's VmRSS and RssAnon (MiB) every `every` seconds while in a `with` block, from a thread."""

    def __init__(self, pid: int, every: float = 0.5):
        import threading

        self.pid, self.every, self.samples = pid, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.wait(self.every):
            self.samples.append([round(time.perf_counter() - start, 1), round(rss_mib(self.pid), 1),
                                 round(rss_mib(self.pid, "RssAnon"), 1)])

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def start_server(index: Path, port: int, threads: int, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("COLBERT_")}
    cmd = [sys.executable, "-m", "colbert", "serve", "--index", f"scifact={index}", "--port", str(port),
           "--threads", str(threads), "--search-threads", str(args.search_threads),
           "--batch-window-ms", str(args.batch_window_ms), "--write-wait-s", "120",
           "--max-documents", str(max(1000, args.write_batch)),
           "--query-precision", getattr(args, "query_precision", "fp32"),
           "--rerank-precision", getattr(args, "rerank_precision", "fp32"),
           *(["--checkpoint", args.checkpoint] if getattr(args, "checkpoint", None) else [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("the server was not ready in 600 s")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)


async def load(url: str, requests: list[dict], clients: int, seconds: float, writer=None) -> dict:
    """`clients` concurrent loops over the requests for `seconds` (and `writer`, awaited to its end)."""
    import httpx

    latencies: dict[str, list[float]] = {"search": [], "rerank": []}
    statuses: dict[int, int] = {}
    errors: list[str] = []
    counter = iter(range(1 << 62))
    stop_at = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=clients + 4)) as http:

        async def client() -> None:
            while time.perf_counter() < stop_at:
                r = requests[next(counter) % len(requests)]
                t = time.perf_counter()
                response = await http.post(f"/v1/{r['kind']}", json=r["body"])
                latencies[r["kind"]].append((time.perf_counter() - t) * 1e3)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code != 200 and len(errors) < 5:
                    errors.append(response.text[:300])

        start = time.perf_counter()
        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        ended: list[float] = []
        clients_done = asyncio.ensure_future(asyncio.gather(*tasks))
        clients_done.add_done_callback(lambda _: ended.append(time.perf_counter()))
        written = await writer(http) if writer is not None else None
        await clients_done
        elapsed = ended[0] - start  # the clients' time: a writer still running after them does not count
    done = sum(statuses.values())
    out = {"requests": done, "client_seconds": elapsed, "qps": done / elapsed, "statuses": statuses,
           "5xx": sum(n for s, n in statuses.items() if s >= 500), "errors": errors,
           **percentiles(latencies["search"] + latencies["rerank"]),
           "search": percentiles(latencies["search"]), "rerank": percentiles(latencies["rerank"])}
    if written is not None:
        out["writer"] = written
    return out


def make_writer(docs: dict, batch: int, base_count: int, pid: int):
    async def write(http) -> dict:
        ids, log, start = list(docs), [], time.perf_counter()
        expected = base_count
        for i in range(0, len(ids), batch):
            part = {d: docs[d] for d in ids[i:i + batch]}
            r = await http.post("/v1/documents", json={"documents": part})
            expected += len(part)
            log.append({"op": "add", "status": r.status_code, "documents": r.json().get("documents"),
                        "expected": expected, "rss_mib": rss_mib(pid)})
        after_adds = await http.post("/v1/search", json={"query": "x", "k": 1})
        for i in range(0, len(ids), batch):
            part = ids[i:i + batch]
            r = await http.request("DELETE", "/v1/documents", json={"doc_ids": part})
            expected -= len(part)
            log.append({"op": "remove", "status": r.status_code, "documents": r.json().get("documents"),
                        "expected": expected, "rss_mib": rss_mib(pid)})
        return {"commits": log, "seconds": time.perf_counter() - start,
                "documents_after_adds": after_adds.json().get("documents"),
                "commits_as_expected": all(c["status"] == 200 and c["documents"] == c["expected"] for c in log)}

    return write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--inprocess-s", type=float, default=30)
    parser.add_argument("--read-s", type=float, default=30)
    parser.add_argument("--mixed-s", type=float, default=60)
    parser.add_argument("--write-docs", type=int, default=500)
    parser.add_argument("--write-batch", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--search-threads", type=int, default=2)
    parser.add_argument("--batch-window-ms", type=float, default=3.0)
    parser.add_argument("--rerank-precision", choices=("fp32", "bf16", "auto"), default="fp32",
                        help="the server's (default fp32: the same work as the in-process Searcher; the server's own "
                             "default is auto, bf16 on CPUs with native bf16)")
    parser.add_argument("--out", default=str(HERE / "results" / "serve.json"))
    parser.add_argument("--index", help="serve this index instead of the SciFact build (with --collection)")
    parser.add_argument("--collection", default=str(SCIFACT / "collection.tsv"),
                        help="the index's passages (TSV), for the BM25 candidates and the writer's texts")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        requests = load_requests(spec["candidates"], Path(spec["collection"]))
        print("RESULT " + json.dumps(inprocess(spec["index"], requests, spec["seconds"], spec["threads"])))
        return

    if args.index:
        master = Path(args.index)
    else:
        master, _ = search_bench.ensure_index(search_bench.ensure_checkpoint(), 2)
    index = WORK / "serve" / "scifact"
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(master, index)
    requests = load_requests(args.candidates, Path(args.collection))
    random.Random(0).shuffle(requests)
    result: dict = {"benchmark": "serve", "machine": f"{os.cpu_count()} cores, shared with other jobs",
                    "settings": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
                    "requests": "alternating search k=10 and rerank by doc_ids (100 BM25 candidates), SciFact queries"}

    child = subprocess.run([sys.executable, __file__, "--child", json.dumps(
        {"index": str(index), "candidates": args.candidates, "seconds": args.inprocess_s, "threads": args.threads,
         "collection": args.collection})],
        capture_output=True, text=True, cwd=ROOT)
    line = next((l for l in child.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"the in-process run failed:\n{child.stderr[-3000:]}")
    result["inprocess"] = json.loads(line[len("RESULT "):])
    print(f"in-process: {result['inprocess']['qps']:.1f} req/s", flush=True)

    from colbert.data import Collection
    from colbert.search.index import LoadedIndex

    collection = Collection(path=args.collection)
    docs = {f"bench-{i}": collection[i % len(collection)] for i in range(args.write_docs)}
    original = LoadedIndex.open(index).live_ids
    port = free_port()
    log = WORK / "serve" / "server.log"
    proc = start_server(index, port, args.threads, args, log)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(load(url, requests[:64], args.clients, min(10.0, args.read_s)))  # warm-up
        read = asyncio.run(load(url, requests, args.clients, args.read_s))
        read["qps_share_of_inprocess"] = read["qps"] / result["inprocess"]["qps"]
        result["server_read_only"] = read
        print(f"server, read only: {read['qps']:.1f} req/s ({100 * read['qps_share_of_inprocess']:.0f} % of "
              f"in-process), p50 {read['p50_ms']:.0f} ms, p99 {read['p99_ms']:.0f} ms", flush=True)
        rss_start = rss_mib(proc.pid)
        with RssSampler(proc.pid) as sampler:
            mixed = asyncio.run(load(url, requests, args.clients, args.mixed_s,
                                     writer=make_writer(docs, args.write_batch, len(original), proc.pid)))
        rss_end = rss_mib(proc.pid)
        after_first = mixed["writer"]["commits"][0]["rss_mib"]
        # The first commit allocates once what every later one reuses (the index's editable copy, the write
        # thread's encoder buffers): growth is measured from it; the step to it is reported beside.
        mixed["rss_mib"] = {"start": rss_start, "after_first_commit": after_first, "end": rss_end,
                            "max": max(c["rss_mib"] for c in mixed["writer"]["commits"]),
                            "first_commit_step_pct": 100 * (after_first - rss_start) / rss_start,
                            "growth_pct": 100 * (rss_end - after_first) / after_first,
                            "growth_pct_from_start": 100 * (rss_end - rss_start) / rss_start,
                            "sampled_max": max(v for _, v, _ in sampler.samples),
                            "sampled_max_pct_over_first_commit": 100 * (max(v for _, v, _ in sampler.samples)
                                                                        - after_first) / after_first,
                            "samples_s_rss_anon": sampler.samples}
        mixed["qps_share_of_inprocess"] = mixed["qps"] / result["inprocess"]["qps"]
        import httpx

        mixed["documents_at_end"] = httpx.post(f"{url}/v1/search", json={"query": "x", "k": 1}).json()["documents"]
        result["server_with_writer"] = mixed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    on_disk = LoadedIndex.open(index).live_ids  # removed passages keep their pid, with no id
    mixed["final_ids_equal_expected"] = sorted(map(str, on_disk)) == sorted(map(str, original))
    mixed["lost_or_duplicated_ids"] = len(set(on_disk) ^ set(original)) + (len(on_disk) - len(set(on_disk)))
    print(f"server with writer: {mixed['qps']:.1f} req/s, p50 {mixed['p50_ms']:.0f} ms, p99 {mixed['p99_ms']:.0f} ms, "
          f"5xx {mixed['5xx']}, commits ok {mixed['writer']['commits_as_expected']}, final ids equal "
          f"{mixed['final_ids_equal_expected']}, RSS {rss_start:.0f} -> {after_first:.0f} (first commit) -> "
          f"{rss_end:.0f} MiB", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
