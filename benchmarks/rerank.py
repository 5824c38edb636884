"""Two-stage reranking on SciFact: BM25 proposes 100 passages per query, ColBERT reorders them. Ours (bf16 and fp32)
vs colbert-ai's `Checkpoint` scoring, in the same run; by doc_ids through the service; the encoder's FLOP rate
against this CPU's measured matmul rate.

    python benchmarks/rerank.py                          # -> benchmarks/results/rerank.json
    python benchmarks/rerank.py --queries 10 --doc-id-queries 50      # shorter
    python benchmarks/rerank.py --doc-ids-only --out benchmarks/results/rerank_doc_ids.json   # by doc_ids only

Builds (or reuses, under benchmarks/_work/) the MiniLM ColBERT checkpoint and the SciFact index (nbits 2), as
benchmarks/search.py does. Then:
  - by text, in process, at 10/50/100 candidates (the first n of the BM25 list) for `--queries` queries: the
    time to encode the query and the candidates and score them (ms, median), ours in bf16 (the query by the
    prepacked bf16 encoder, the documents in bf16 autocast: what `colbert serve` uses on CPUs with native bf16),
    ours in fp32, and colbert-ai 0.2.22 (`Checkpoint.queryFromText`,
    `docFromText`, `colbert_score`) in its side venv (../shared/reference/setup.sh), each with `--threads` threads;
    score differences (bf16 vs fp32, fp32 vs colbert-ai) and nDCG@10 of each reordering against qrels;
  - the encoder's useful FLOP rate (2 x linear-layer parameters per real token, plus attention) against the rate
    of a plain bf16 / fp32 matmul of the encoder's shape on this CPU;
  - rerank by doc_ids (the 100 candidates, scored from the index's stored embeddings), stage by stage in process
    for `--stage-queries` queries, with 1 torch thread and with `--threads`: tokenizing the query, encoding it
    (fp32; bf16 as the service does, `Searcher.encode(precision="bf16")`; and bf16 autocast), looking the ids up, MaxSim over the decompressed embeddings (the fused kernel the
    server calls); the floor of an fp32 / bf16 query encoding on this CPU (the encoder's linear-layer FLOP for one
    query divided by the measured matmul rate at that shape); each score checked against MaxSim over embeddings
    decoded by the plain-PyTorch reference decoder;
  - through `colbert serve` on 127.0.0.1 (one client, requests one after the other, the server's default batch
    window, which a lone request does not wait; one server at a time): POST /v1/rerank by doc_ids for
    `--doc-id-queries` queries, with bf16 queries (`--rerank-precision bf16`, what the default `auto` gives on
    CPUs with native bf16), with fp32 queries (`--rerank-precision fp32`), and with fp32 queries through
    onnxruntime (the checkpoint exported by `colbert export onnx`, served with `--checkpoint`): client p50 / p99
    ms and the
    server's stages (its Server-Timing header: queue, encode, score, total; the client's time minus total is HTTP,
    JSON and the ASGI stack; each request is then sent again from the standard library's http.client on a
    kept-alive connection, whose own cost is lower than httpx's: `stdlib_client`), the score differences bf16 vs fp32 and onnxruntime vs torch, and the fp32 answers
    against the exact in-process scores; and
    by text at 100 candidates for `--http-text-queries` queries.
"""

from __future__ import annotations

import argparse
import http.client
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
from typing import Optional

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
        Q = ckpt.queryFromText([query], precision="bf16" if bf16 else "fp32")[0]
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


def matmul_rates(threads: int, rows: int = 4096, hidden: int = 384, inner: int = 1536, reps: int = 20) -> dict:
    """GFLOP/s of (rows, hidden) @ (hidden, inner), the encoder's feed-forward shape, in fp32 and bf16."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(rows, hidden, dtype=dtype), torch.randn(hidden, inner, dtype=dtype)
        for _ in range(3):
            a @ b
        times = []
        for _ in range(reps):
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


def doc_id_stages(index: Path, checkpoint: str, work: list[dict], threads: int, queries: int) -> dict:
    """Rerank by doc_ids in process, stage by stage (median ms over `queries` queries, 100 candidates each)."""
    import torch

    from colbert import Searcher
    from colbert.kernels import reference as ref_kernels

    torch.set_num_threads(threads)
    searcher = Searcher(str(index), checkpoint=checkpoint, verbose=0)
    ranker, loaded, tokenizer = searcher.ranker, searcher.loaded, searcher.checkpoint.query_tokenizer
    times: dict[str, list[float]] = {}
    worst = 0.0

    def timed(stage: str, fn):
        t = time.perf_counter()
        out = fn()
        times.setdefault(stage, []).append((time.perf_counter() - t) * 1e3)
        return out

    for item in work[:2]:  # warm-up
        searcher.encode(item["query"])
    for item in work[:queries]:
        timed("tokenize", lambda: tokenizer.tensorize([item["query"]]))
        Q = timed("encode_fp32", lambda: searcher.encode(item["query"])[0])  # tokenizing included
        timed("encode_bf16", lambda: searcher.encode(item["query"], precision="bf16")[0])  # as the service
        with torch.autocast("cpu", dtype=torch.bfloat16):  # what bf16 queries cost before the prepacked encoder
            timed("encode_bf16_autocast", lambda: searcher.encode(item["query"])[0].float())
        pids = timed("lookup", lambda: torch.tensor([loaded.pid_of(d) for d in item["docs_ids"]]))
        with torch.inference_mode():
            scores = timed("maxsim", lambda: ranker.maxsim(Q, pids))
        codes, packed, lengths = loaded.lookup(pids)  # the oracle: reference decoder, plain MaxSim per document
        D = ref_kernels.decompress_residuals(codes, packed, ranker.centroids, ranker.bucket_weights, loaded.nbits)
        exact = torch.stack([(Q @ d.T).max(dim=1).values.sum() for d in D.split(lengths.tolist())])
        worst = max(worst, float((scores - exact).abs().max()))
    out = {stage: statistics.median(ms) for stage, ms in times.items()}
    out["total_fp32"] = out["encode_fp32"] + out["lookup"] + out["maxsim"]
    out["total_bf16"] = out["encode_bf16"] + out["lookup"] + out["maxsim"]
    embeddings = [int(loaded.doclens[[loaded.pid_of(d) for d in item["docs_ids"]]].sum()) for item in work[:queries]]
    out["embeddings_scored_median"] = statistics.median(embeddings)
    out["max_abs_diff_vs_reference_decoder"] = worst
    return out


def encode_floor(checkpoint: str, threads: int, repeats: int = 30) -> dict:
    """The least time one query's encoding can take here, two ways: its linear-layer FLOP over the matmul rate
    measured at the shape those layers run at (query_maxlen rows, one weight matrix kept hot in cache), and the
    encoder's linear layers alone, run one after the other on the model's own weights (attention, layer norms,
    GELU and Python left out)."""
    import torch
    import torch.nn.functional as F

    from colbert.modeling.checkpoint import Checkpoint

    torch.set_num_threads(threads)
    ckpt = Checkpoint(checkpoint, verbose=0)
    layers = [m for m in ckpt.bert.modules() if isinstance(m, torch.nn.Linear)]
    rows, config = ckpt.colbert_config.query_maxlen, ckpt.bert.config
    gflop = 2 * sum(m.weight.numel() for m in layers) * rows / 1e9
    rates = matmul_rates(threads, rows=rows, hidden=config.hidden_size, inner=config.intermediate_size, reps=200)
    inputs = [torch.randn(1, rows, m.in_features) for m in layers]
    linear_ms = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        weights = [(m.weight.to(dtype), m.bias.to(dtype)) for m in layers]
        xs = [x.to(dtype) for x in inputs]
        times = []
        with torch.inference_mode():
            for _ in range(repeats):
                t = time.perf_counter()
                for x, (w, b) in zip(xs, weights):
                    F.linear(x, w, b)
                times.append((time.perf_counter() - t) * 1e3)
        linear_ms[name] = statistics.median(times[3:])
    return {"query_tokens": rows, "linear_layers": len(layers), "linear_gflop_per_query": gflop,
            "matmul_gflops_at_query_shape": rates,
            **{f"floor_ms_{name}_hot_matmul_rate": gflop / rate * 1e3 for name, rate in rates.items()},
            **{f"linear_layers_only_ms_{name}": ms for name, ms in linear_ms.items()}}


def _stages(response) -> dict:
    header = response.headers.get("server-timing", "")
    return {stage: float(ms) for stage, ms in (part.split(";dur=") for part in header.split(", ") if part)}


def onnx_export(checkpoint: str) -> Optional[str]:
    """The checkpoint exported to ONNX (fp32, under benchmarks/_work/), or None without the onnx extra."""
    out = WORK / "minilm-colbert-onnx"
    if not (out / "colbert_onnx.json").exists():
        try:
            from colbert.export.onnx import export_onnx

            export_onnx(checkpoint, out, quantize=False)
        except ImportError as e:
            print(f"no ONNX server: {e} (pip install 'colbert-ai[onnx]')", file=sys.stderr)
            return None
    return str(out)


def http_doc_ids(index: Path, work: list[dict], doc_id_queries: int, threads: int, onnx: Optional[str]) -> dict:
    """Rerank by doc_ids through servers with fp32 queries (torch), bf16 queries (`--rerank-precision bf16`) and,
    if given, fp32 queries through onnxruntime (`--checkpoint` an ONNX export), one server at a time (an idle
    server's thread pools spin for a while after each request and would slow the one being asked): client and
    server times."""
    import httpx

    variants = {"fp32": {"rerank_precision": "fp32"}, "bf16": {"rerank_precision": "bf16"}}
    if onnx is not None:
        variants["onnx_fp32"] = {"rerank_precision": "fp32", "checkpoint": onnx}
    items = (work * (1 + doc_id_queries // len(work)))[:doc_id_queries]
    out = {}
    for name, flags in variants.items():
        args = argparse.Namespace(search_threads=2, batch_window_ms=3.0, write_batch=0, query_precision="fp32",
                                  **flags)
        port = serve_bench.free_port()
        proc = serve_bench.start_server(index, port, threads, args, WORK / f"rerank-server-{name}.log")
        run: dict = {"times": [], "stdlib_times": [], "stages": {}, "answers": {}}
        stdlib = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http_:
                for item in work[:5]:  # warm-up
                    http_.post("/v1/rerank", json={"query": item["query"], "doc_ids": item["docs_ids"], "k": 10})
                    _stdlib_post(stdlib, {"query": item["query"], "doc_ids": item["docs_ids"], "k": 10})
                for item in items:
                    body = {"query": item["query"], "doc_ids": item["docs_ids"], "k": 10}
                    t = time.perf_counter()
                    r = http_.post("/v1/rerank", json=body)
                    run["times"].append((time.perf_counter() - t) * 1e3)
                    assert r.status_code == 200, r.text
                    for stage, ms in _stages(r).items():
                        run["stages"].setdefault(stage, []).append(ms)
                    run["answers"][item["qid"]] = [(h["doc_id"], h["score"]) for h in r.json()["results"]]
                    t = time.perf_counter()
                    _stdlib_post(stdlib, body)  # the same request again, from the leanest client at hand
                    run["stdlib_times"].append((time.perf_counter() - t) * 1e3)
        finally:
            stdlib.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        out[name] = {
            "precision": name, **serve_bench.percentiles(run["times"]),
            "stdlib_client": serve_bench.percentiles(run["stdlib_times"]),
            "server_stages_p50_ms": {stage: statistics.median(ms) for stage, ms in run["stages"].items()},
            "client_minus_server_total_p50_ms": statistics.median(
                c - s for c, s in zip(run["times"], run["stages"]["total"])),
            "answers": run["answers"]}
    return out


def _stdlib_post(connection: http.client.HTTPConnection, body: dict) -> None:
    """POST /v1/rerank through http.client on a kept-alive connection (JSON in, bytes read, status checked)."""
    connection.request("POST", "/v1/rerank", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"POST /v1/rerank answered {response.status}: {data[:300]!r}")


def answers_difference(a: dict, b: dict) -> dict:
    """Top-10 answers of two runs: score differences on the documents both returned, same top-10 sets."""
    diffs, same = [], 0
    for qid, hits in a.items():
        other = dict(b[qid])
        diffs += [abs(s - other[d]) for d, s in hits if d in other]
        same += {d for d, _ in hits} == set(other)
    return {"max_abs_diff": max(diffs), "mean_abs_diff": statistics.mean(diffs),
            "queries_same_top10_set": same / len(a)}


def exact_scores(index: Path, checkpoint: str, work: list[dict], answers: dict) -> dict:
    """The fp32 server's top-10 scores against MaxSim over reference-decoded embeddings with fp32 queries."""
    import torch

    from colbert import Searcher
    from colbert.kernels import reference as ref_kernels

    searcher = Searcher(str(index), checkpoint=checkpoint, verbose=0)
    ranker, loaded, by_qid = searcher.ranker, searcher.loaded, {w["qid"]: w for w in work}
    worst = 0.0
    for qid, hits in list(answers.items())[:50]:
        Q = searcher.encode(by_qid[qid]["query"])[0]
        for doc_id, score in hits:
            codes, packed, _ = loaded.lookup(torch.tensor([loaded.pid_of(doc_id)]))
            D = ref_kernels.decompress_residuals(codes, packed, ranker.centroids, ranker.bucket_weights,
                                                 loaded.nbits)
            worst = max(worst, abs(score - float((Q @ D.T).max(dim=1).values.sum())))
    return {"queries_checked": min(50, len(answers)), "max_abs_diff": worst}


def http_text(index: Path, work: list[dict], text_queries: int, threads: int) -> dict:
    import httpx

    args = argparse.Namespace(search_threads=2, batch_window_ms=3.0, write_batch=0, query_precision="fp32",
                              rerank_precision="auto")
    port = serve_bench.free_port()
    proc = serve_bench.start_server(index, port, threads, args, WORK / "rerank-server.log")
    out = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            http.post("/v1/rerank", json={"query": work[0]["query"], "documents": work[0]["docs"][:10], "k": 10})
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


def by_doc_ids(index: Path, checkpoint: str, work: list[dict], args: argparse.Namespace) -> dict:
    """Rerank by doc_ids: in-process stages, the encoding floor, and the service with fp32 and bf16 queries."""
    out: dict = {"in_process_stages_p50_ms": {}, "encode_floor": {}}
    for threads in args.stage_threads:
        out["in_process_stages_p50_ms"][f"{threads}_threads"] = doc_id_stages(index, checkpoint, work, threads,
                                                                              args.stage_queries)
        out["encode_floor"][f"{threads}_threads"] = encode_floor(checkpoint, threads)
    service = http_doc_ids(index, work, args.doc_id_queries, args.threads, onnx_export(checkpoint))
    out["bf16_queries_vs_fp32"] = answers_difference(service["fp32"]["answers"], service["bf16"]["answers"])
    if "onnx_fp32" in service:
        out["onnx_queries_vs_fp32"] = answers_difference(service["fp32"]["answers"], service["onnx_fp32"]["answers"])
    out["fp32_vs_exact_maxsim"] = exact_scores(index, checkpoint, work, service["fp32"]["answers"])
    out["service"] = {p: {k: v for k, v in run.items() if k != "answers"} for p, run in service.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=30, help="queries reranked by text in process")
    parser.add_argument("--doc-id-queries", type=int, default=300, help="queries reranked by doc_ids over HTTP")
    parser.add_argument("--stage-queries", type=int, default=100, help="queries timed stage by stage in process")
    parser.add_argument("--stage-threads", type=lambda v: [int(t) for t in v.split(",")],
                        default=sorted({1, os.cpu_count() or 1}), help="torch threads of the in-process stages "
                        "(comma-separated; default 1 and the number of cores)")
    parser.add_argument("--http-text-queries", type=int, default=10, help="queries reranked by text over HTTP")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--bsize", type=int, default=64, help="documents per encoder batch (ours and colbert-ai)")
    parser.add_argument("--doc-ids-only", action="store_true",
                        help="only the rerank by doc_ids part (in-process stages, encoding floor, the servers)")
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
    if args.doc_ids_only:
        result["by_doc_ids_100"] = by_doc_ids(index, str(checkpoint), work, args)
        _write(result, args.out)
        return
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
    result["by_doc_ids_100"] = by_doc_ids(index, str(checkpoint), work, args)
    result["http"] = http_text(index, work, args.http_text_queries, args.threads)
    _write(result, args.out)


def _write(result: dict, out: str) -> None:
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
