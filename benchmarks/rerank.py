"""Two-stage reranking on SciFact: BM25 proposes 100 passages per query, ColBERT reorders them. Ours (bf16 and fp32)
vs colbert-ai's `Checkpoint` scoring, in the same run; by doc_ids through the service; the encoder's FLOP rate
against this CPU's measured matmul rate.

    python benchmarks/rerank.py                          # -> benchmarks/results/rerank.json
    python benchmarks/rerank.py --queries 10 --doc-id-queries 50      # shorter

Builds (or reuses, under benchmarks/_work/) the MiniLM ColBERT checkpoint and the SciFact index (nbits 2), as
benchmarks/search.py does. Then:
  - by text, in process, at 10/50/100 candidates (the first n of the BM25 list) for `--queries` queries: the
    time to encode the query and the candidates and score them (ms, median), ours in bf16 autocast (what
    `colbert serve` uses on CPUs with native bf16), ours in fp32, and colbert-ai 0.2.22 (`Checkpoint.queryFromText`,
    `docFromText`, `colbert_score`) in its side venv (../shared/reference/setup.sh), each with `--threads` threads;
    score differences (bf16 vs fp32, fp32 vs colbert-ai) and nDCG@10 of each reordering against qrels;
  - the encoder's useful FLOP rate (2 x linear-layer parameters per real token, plus attention) against the rate
    of a plain bf16 / fp32 matmul of the encoder's shape on this CPU;
  - through `colbert serve` on 127.0.0.1 (one client, requests one after the other): POST /v1/rerank by doc_ids
    (the 100 candidates, scored from the index's stored embeddings) for `--doc-id-queries` queries, and by text
    at 100 candidates for `--http-text-queries` queries: p50 / p99 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != HERE]  # see benchmarks/serve.py


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_bench", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


search_bench = _load("search")
serve_bench = _load("serve")
SCIFACT, WORK = search_bench.SCIFACT, search_bench.WORK
SIZES = (10, 50, 100)
REFERENCE_PYTHON = Path.home() / ".cache" / "colbert-reference" / "venv" / "bin" / "python"

REFERENCE_SNIPPET = r"""
import json, sys, time, torch
args = json.load(open(sys.argv[1]))
torch.set_num_threads(args["threads"])
from colbert.infra import ColBERTConfig
from colbert.modeling.checkpoint import Checkpoint
from colbert.modeling.colbert import colbert_score
ckpt = Checkpoint(args["checkpoint"], colbert_config=ColBERTConfig())
out = {"doc_maxlen": ckpt.colbert_config.doc_maxlen, "runs": []}
def rerank(query, docs):
    Q = ckpt.queryFromText([query])
    D = ckpt.docFromText(docs, bsize=args["bsize"])[0]  # (n, L, d), zero vectors where masked
    return colbert_score(Q, D, D.abs().sum(-1) != 0, config=ckpt.colbert_config)
rerank(args["work"][0]["query"], args["work"][0]["docs"][:10])  # warm-up
for item in args["work"]:
    row = {}
    for n in args["sizes"]:
        t = time.perf_counter()
        with torch.inference_mode():
            scores = rerank(item["query"], item["docs"][:n])
        row[str(n)] = {"ms": (time.perf_counter() - t) * 1e3, "scores": scores.float().tolist()}
    out["runs"].append(row)
print("RESULT " + json.dumps(out))
"""


def ours(checkpoint: str, work: list[dict], threads: int, bf16: bool, bsize: int) -> dict:
    """Our rerank by text as the service runs it (Service._score_texts): timings and scores per query and size."""
    import torch

    from colbert.indexing.encoder import encode_passages
    from colbert.modeling.checkpoint import Checkpoint
    from colbert.modeling.scoring import colbert_score_packed

    torch.set_num_threads(threads)
    ckpt = Checkpoint(checkpoint, verbose=0)

    def rerank(query: str, docs: list[str]) -> torch.Tensor:
        Q = ckpt.queryFromText([query])[0]
        D, doclens = encode_passages(ckpt, docs, bsize, show_progress=False, bf16=bf16)
        return colbert_score_packed(Q.float(), D.float(), torch.tensor(doclens))

    rerank(work[0]["query"], work[0]["docs"][:10])  # warm-up
    runs = []
    for item in work:
        row = {}
        for n in SIZES:
            t = time.perf_counter()
            scores = rerank(item["query"], item["docs"][:n])
            row[str(n)] = {"ms": (time.perf_counter() - t) * 1e3, "scores": scores.tolist()}
        runs.append(row)
    return {"doc_maxlen": ckpt.colbert_config.doc_maxlen, "runs": runs}


def reference(checkpoint: str, work: list[dict], threads: int, bsize: int) -> dict:
    if not REFERENCE_PYTHON.exists():
        return {"skipped": f"no reference venv at {REFERENCE_PYTHON} (bash ../shared/reference/setup.sh)"}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    payload = json.dumps({"checkpoint": checkpoint, "work": work, "threads": threads, "sizes": list(SIZES),
                          "bsize": bsize})
    with tempfile.TemporaryDirectory() as cwd:  # colbert-ai reads git metadata of its working directory
        (Path(cwd) / "work.json").write_text(payload)
        proc = subprocess.run([str(REFERENCE_PYTHON), "-c", REFERENCE_SNIPPET, str(Path(cwd) / "work.json")],
                              capture_output=True, text=True, env=env, cwd=cwd)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        return {"failed": proc.stderr[-3000:]}
    return json.loads(line[len("RESULT "):])


def matmul_rates(threads: int, rows: int = 4096, hidden: int = 384, inner: int = 1536) -> dict:
    """GFLOP/s of (rows, hidden) @ (hidden, inner), the encoder's feed-forward shape, in fp32 and bf16."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(rows, hidden, dtype=dtype), torch.randn(hidden, inner, dtype=dtype)
        for _ in range(3):
            a @ b
        times = []
        for _ in range(20):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        out[name] = 2 * rows * hidden * inner / statistics.median(times) / 1e9
    return out


def encoder_gflop(checkpoint: str, work: list[dict], n: int) -> float:
    """Useful GFLOP to encode the first n candidates of every query: 2 x linear parameters per real token, plus
    QK^T and AV (4 x L^2 x hidden per layer and document); the queries' share is left out (one query per n)."""
    import torch

    from colbert.modeling.checkpoint import Checkpoint

    ckpt = Checkpoint(checkpoint, verbose=0)
    linear = sum(m.weight.numel() for m in ckpt.modules() if isinstance(m, torch.nn.Linear))
    config = ckpt.bert.config
    total = 0.0
    for item in work:
        for ids in ckpt.doc_tokenizer.encode_unpadded(item["docs"][:n]):
            L = len(ids)
            total += 2 * linear * L + 4 * L * L * config.hidden_size * config.num_hidden_layers
    return total / 1e9


def ndcg10(run: dict, qrels: dict) -> float:
    import ir_measures
    from ir_measures import nDCG

    scored = [ir_measures.ScoredDoc(q, str(d), s) for q, rows in run.items() for d, s in rows]
    qrel_list = [ir_measures.Qrel(q, d, r) for q, docs in qrels.items() if q in run for d, r in docs.items()]
    return ir_measures.calc_aggregate([nDCG @ 10], qrel_list, scored)[nDCG @ 10]


def compare(a: dict, b: dict) -> dict:
    """Score differences between two runs (same queries, same candidates) at each size."""
    out = {}
    for n in map(str, SIZES):
        diffs, same_top10, same_order = [], 0, 0
        for ra, rb in zip(a["runs"], b["runs"]):
            sa, sb = ra[n]["scores"], rb[n]["scores"]
            diffs += [abs(x - y) for x, y in zip(sa, sb)]
            top_a = sorted(range(len(sa)), key=lambda i: -sa[i])[:10]
            top_b = sorted(range(len(sb)), key=lambda i: -sb[i])[:10]
            same_top10 += set(top_a) == set(top_b)
            same_order += top_a == top_b
        scale = statistics.mean(abs(x) for r in a["runs"] for x in r[n]["scores"])
        out[n] = {"max_abs_diff": max(diffs), "mean_abs_diff": statistics.mean(diffs), "mean_abs_score": scale,
                  "queries_same_top10_set": same_top10 / len(a["runs"]),
                  "queries_same_top10_order": same_order / len(a["runs"])}
    return out


def summary(runs: dict, work: list[dict], qrels: dict) -> dict:
    out = {}
    for n in map(str, SIZES):
        out[n] = {"median_ms": statistics.median(r[n]["ms"] for r in runs["runs"])}
        run = {item["qid"]: list(zip(item["docs_ids"][:int(n)], r[n]["scores"])) for item, r in zip(work, runs["runs"])}
        out[n]["nDCG@10"] = ndcg10(run, qrels)
    return out


def http_timings(index: Path, work: list[dict], doc_id_queries: int, text_queries: int, threads: int) -> dict:
    import httpx

    args = argparse.Namespace(search_threads=2, batch_window_ms=1.0, write_batch=0)
    port = serve_bench.free_port()
    proc = serve_bench.start_server(index, port, threads, args, WORK / "rerank-server.log")
    url = f"http://127.0.0.1:{port}"
    out = {}
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            for item in work[:5]:  # warm-up
                http.post("/v1/rerank", json={"query": item["query"], "doc_ids": item["docs_ids"], "k": 10})
            times = []
            for item in (work * (1 + doc_id_queries // len(work)))[:doc_id_queries]:
                t = time.perf_counter()
                r = http.post("/v1/rerank", json={"query": item["query"], "doc_ids": item["docs_ids"], "k": 10})
                times.append((time.perf_counter() - t) * 1e3)
                assert r.status_code == 200, r.text
            out["by_doc_ids_100"] = serve_bench.percentiles(times)
            times, precision = [], None
            for item in work[:text_queries]:
                t = time.perf_counter()
                r = http.post("/v1/rerank", json={"query": item["query"], "documents": item["docs"], "k": 10})
                times.append((time.perf_counter() - t) * 1e3)
                assert r.status_code == 200, r.text
                precision = r.json()["precision"]
            out["by_text_100"] = {**serve_bench.percentiles(times), "precision": precision}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=30, help="queries reranked by text in process")
    parser.add_argument("--doc-id-queries", type=int, default=300, help="queries reranked by doc_ids over HTTP")
    parser.add_argument("--http-text-queries", type=int, default=10, help="queries reranked by text over HTTP")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--bsize", type=int, default=64, help="documents per encoder batch (ours and colbert-ai)")
    parser.add_argument("--out", default=str(HERE / "results" / "rerank.json"))
    args = parser.parse_args()

    from colbert.data import Collection, Queries
    from colbert.infra.device import cpu_has_native_bf16

    checkpoint = search_bench.ensure_checkpoint()
    index, _ = search_bench.ensure_index(checkpoint, 2)
    serve_bench.load_requests(100)  # caches the BM25 candidates
    candidates = json.loads((WORK / "bm25-top100.json").read_text())
    collection, queries = Collection(path=SCIFACT / "collection.tsv"), Queries(path=SCIFACT / "queries.tsv")
    text_of = {collection.id_of(p): t for p, t in enumerate(collection)}
    qrels: dict = {}
    for line in (SCIFACT / "qrels.tsv").read_text().splitlines():
        if line.strip():
            q, d, r = line.split("\t")
            qrels.setdefault(q, {})[d] = int(r)
    work = [{"qid": str(qid), "query": text, "docs_ids": candidates[str(qid)],
             "docs": [text_of[d] for d in candidates[str(qid)]]} for qid, text in queries.items()]
    scored = [w for w in work if w["qid"] in qrels][:args.queries]

    result: dict = {"benchmark": "rerank", "machine": f"{os.cpu_count()} cores, shared with other jobs",
                    "native_bf16": cpu_has_native_bf16(), "settings": {k: v for k, v in vars(args).items()
                                                                       if k != "out"},
                    "first_stage": "BM25 top 100 (colbert.training.bm25), SciFact queries"}
    fp32 = ours(str(checkpoint), scored, args.threads, bf16=False, bsize=args.bsize)
    bf16 = ours(str(checkpoint), scored, args.threads, bf16=True, bsize=args.bsize)
    ref = reference(str(checkpoint), scored, args.threads, args.bsize)
    result["by_text_in_process"] = {"ours_bf16": summary(bf16, scored, qrels), "ours_fp32": summary(fp32, scored, qrels)}
    result["score_difference"] = {"bf16_vs_fp32": compare(fp32, bf16)}
    if "runs" in ref:
        result["by_text_in_process"]["colbert_ai"] = summary(ref, scored, qrels)
        result["score_difference"]["ours_fp32_vs_colbert_ai"] = compare(ref, fp32)
        result["doc_maxlen"] = {"ours": fp32["doc_maxlen"], "colbert_ai": ref["doc_maxlen"]}
    else:
        result["by_text_in_process"]["colbert_ai"] = ref
    first = {"BM25": ndcg10({w["qid"]: [(d, 100 - i) for i, d in enumerate(w["docs_ids"])] for w in scored}, qrels)}
    result["first_stage_nDCG@10"] = first
    rates = matmul_rates(args.threads)
    gflop = encoder_gflop(str(checkpoint), scored, 100)
    per_query = {name: runs["runs"] for name, runs in (("bf16", bf16), ("fp32", fp32))}
    result["encoder_rate_at_100"] = {
        "matmul_gflops": rates, "useful_gflop_per_query": gflop / len(scored),
        **{f"{name}_gflops": gflop / (sum(r["100"]["ms"] for r in runs) / 1e3) for name, runs in per_query.items()},
    }
    for name in ("bf16", "fp32"):
        rate = result["encoder_rate_at_100"][f"{name}_gflops"]
        result["encoder_rate_at_100"][f"{name}_share_of_matmul"] = rate / rates[name]
    result["http"] = http_timings(index, work, args.doc_id_queries, args.http_text_queries, args.threads)
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
