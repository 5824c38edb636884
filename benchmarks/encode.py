"""Document encoding throughput: length-sorted batches (ours) vs input-order batches, in one run.

    python benchmarks/encode.py --out benchmarks/results/encode.json
    python benchmarks/encode.py --backends --docs 300 --out benchmarks/results/encode_backends.json

--backends compares encoders instead, in one run, alternating: torch fp32, torch bf16 (CPU autocast),
onnxruntime fp32 and onnxruntime int8 (colbert.export.onnx; needs the onnx extra): document throughput
(docs/s over --docs documents), query latency (one query per call, median ms over --latency-queries queries) and
query throughput (all SciFact queries in batches of 128, queries/s), medians over --repeats.

Encodes the first --docs SciFact documents with the MiniLM ColBERT checkpoint (built from ../shared/compat if
--checkpoint is not given), --repeats times per mode, alternating modes, and reports median documents/s.
With the reference installed (bash ../shared/reference/setup.sh), its Checkpoint.docFromText runs in the same
run too (--reference-python, default ~/.cache/colbert-reference/venv/bin/python).
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
SHARED = HERE.parent.parent / "shared"

REFERENCE_SNIPPET = """
import sys, time, json, torch
torch.set_num_threads(int(sys.argv[3]))
from colbert.modeling.checkpoint import Checkpoint
from colbert.infra import ColBERTConfig
docs = [l.split('\\t', 1)[1].strip() for l in open(sys.argv[2], encoding='utf-8')][: int(sys.argv[4])]
ckpt = Checkpoint(sys.argv[1], colbert_config=ColBERTConfig(doc_maxlen=int(sys.argv[6])))
times = []
for _ in range(int(sys.argv[5])):
    t = time.perf_counter(); ckpt.docFromText(docs, bsize=64, keep_dims='flatten'); times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def load_docs(n: int) -> list[str]:
    with open(SHARED / "data" / "scifact" / "collection.tsv", encoding="utf-8") as f:
        return [line.split("\t", 1)[1].strip() for line, _ in zip(f, range(n))]


def encode_input_order(ckpt, docs: list[str], bsize: int) -> int:
    """The baseline: batches in input order, each padded to its own longest document."""
    ids = ckpt.doc_tokenizer.encode_unpadded(docs)
    total = 0
    for start in range(0, len(ids), bsize):
        input_ids, mask = ckpt.doc_tokenizer.pad(ids[start:start + bsize])
        D, keep = ckpt.doc(input_ids, mask, keep_dims="return_mask")
        total += int(keep.sum())
    return total


def padded_tokens(ckpt, docs: list[str], bsize: int) -> dict[str, int]:
    """Token positions the encoder computes, per mode: a machine-independent measure of the work."""
    from colbert.modeling.checkpoint import length_sorted_batches

    lengths = [len(x) for x in ckpt.doc_tokenizer.encode_unpadded(docs)]
    def cost(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)
    in_order = [list(range(i, min(i + bsize, len(lengths)))) for i in range(0, len(lengths), bsize)]
    return {"real": sum(lengths), "sorted": cost(length_sorted_batches(lengths, bsize)), "input_order": cost(in_order),
            "reference": len(lengths) * max(lengths)}  # the reference pads every batch to the longest of the call


def run_reference(python: str, checkpoint: str, n: int, repeats: int, threads: int,
                  doc_maxlen: int) -> list[float] | None:
    if not Path(python).exists():
        return None
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as cwd:  # colbert-ai reads git metadata of its working directory
        out = subprocess.run([python, "-c", REFERENCE_SNIPPET, checkpoint, str(SHARED / "data/scifact/collection.tsv"),
                              str(threads), str(n), str(repeats), str(doc_maxlen)], capture_output=True, text=True, env=env, cwd=cwd)
    if out.returncode != 0:
        print("reference failed:", out.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_queries() -> list[str]:
    with open(SHARED / "data" / "scifact" / "queries.tsv", encoding="utf-8") as f:
        return [line.split("\t", 1)[1].strip() for line in f]


def backends(checkpoint: str, docs: list[str], args: argparse.Namespace) -> dict:
    """Torch fp32/bf16 and onnxruntime fp32/int8 encoders, measured alternately in one run."""
    import contextlib

    from colbert import Checkpoint, ColBERTConfig
    from colbert.export.onnx import OnnxCheckpoint, export_onnx

    config = ColBERTConfig(doc_maxlen=args.doc_maxlen)
    torch_ckpt = Checkpoint(checkpoint, colbert_config=config, verbose=0)
    out = export_onnx(torch_ckpt, tempfile.mkdtemp(prefix="colbert-onnx-"))
    encoders = {
        "torch_fp32": (torch_ckpt, contextlib.nullcontext),
        "torch_bf16": (torch_ckpt, lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
        "onnxruntime_fp32": (OnnxCheckpoint(out, colbert_config=config), contextlib.nullcontext),
        "onnxruntime_int8": (OnnxCheckpoint(out, int8=True, colbert_config=config), contextlib.nullcontext),
    }
    queries = load_queries()
    few = queries[: args.latency_queries]
    times: dict[str, dict[str, list[float]]] = {name: {"docs": [], "query_latency": [], "queries": []}
                                                for name in encoders}
    for name, (ckpt, context) in encoders.items():  # warm-up
        with context():
            ckpt.docFromText(docs[:16], bsize=args.bsize)
            ckpt.queryFromText(few[:4])
    for _ in range(args.repeats):
        for name, (ckpt, context) in encoders.items():
            with context():
                start = time.perf_counter()
                ckpt.docFromText(docs, bsize=args.bsize, keep_dims="flatten")
                times[name]["docs"].append(time.perf_counter() - start)
                for q in few:
                    start = time.perf_counter()
                    ckpt.queryFromText([q])
                    times[name]["query_latency"].append(time.perf_counter() - start)
                start = time.perf_counter()
                ckpt.queryFromText(queries, bsize=128)
                times[name]["queries"].append(time.perf_counter() - start)
    return {
        name: {"docs_per_s": len(docs) / statistics.median(t["docs"]),
               "query_latency_ms_median": 1000 * statistics.median(t["query_latency"]),
               "queries_per_s": len(queries) / statistics.median(t["queries"]), "seconds": t}
        for name, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--bsize", type=int, default=64)
    parser.add_argument("--doc-maxlen", type=int, default=180)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reference-python", default=os.path.expanduser("~/.cache/colbert-reference/venv/bin/python"))
    parser.add_argument("--backends", action="store_true",
                        help="compare torch fp32/bf16 and onnxruntime fp32/int8 encoders instead")
    parser.add_argument("--latency-queries", type=int, default=50)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.out = args.out or str(HERE / "results" / ("encode_backends.json" if args.backends else "encode.json"))
    torch.set_num_threads(args.threads)

    from colbert import Checkpoint

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = tempfile.mkdtemp(prefix="minilm-colbert-")
        subprocess.run([sys.executable, str(SHARED / "compat" / "build_checkpoint.py"), checkpoint], check=True,
                       capture_output=True)
    docs = load_docs(args.docs)
    from colbert import ColBERTConfig

    if args.backends:
        measured = backends(checkpoint, docs, args)
        result = {"benchmark": "encode_backends", "docs": len(docs), "bsize": args.bsize,
                  "doc_maxlen": args.doc_maxlen, "threads": args.threads, "torch": torch.__version__,
                  "device": "cpu", "repeats": args.repeats, "encoders": measured}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({n: {k: round(v, 2) for k, v in m.items() if k != "seconds"} for n, m in measured.items()},
                         indent=2))
        return
    ckpt = Checkpoint(checkpoint, colbert_config=ColBERTConfig(doc_maxlen=args.doc_maxlen), verbose=0)
    ckpt.docFromText(docs[:64], bsize=args.bsize)  # warm-up
    times: dict[str, list[float]] = {"sorted": [], "input_order": []}
    for _ in range(args.repeats):
        for mode in times:
            start = time.perf_counter()
            if mode == "sorted":
                ckpt.docFromText(docs, bsize=args.bsize, keep_dims="flatten")
            else:
                encode_input_order(ckpt, docs, args.bsize)
            times[mode].append(time.perf_counter() - start)
    reference = run_reference(args.reference_python, checkpoint, args.docs, args.repeats, args.threads,
                              args.doc_maxlen)
    if reference:
        times["reference_docFromText"] = reference
    result = {
        "benchmark": "encode", "docs": len(docs), "bsize": args.bsize, "doc_maxlen": args.doc_maxlen,
        "threads": args.threads, "padded_tokens": padded_tokens(ckpt, docs, args.bsize),
        "torch": torch.__version__, "device": "cpu",
        "seconds": times,
        "docs_per_s_median": {m: len(docs) / statistics.median(t) for m, t in times.items()},
    }
    result["speedup_sorted_vs_input_order"] = (result["docs_per_s_median"]["sorted"]
                                               / result["docs_per_s_median"]["input_order"])
    if reference:
        result["speedup_sorted_vs_reference"] = (result["docs_per_s_median"]["sorted"]
                                                 / result["docs_per_s_median"]["reference_docFromText"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["docs_per_s_median"], indent=2), f"\nspeedup sorted/input-order: "
          f"{result['speedup_sorted_vs_input_order']:.2f}x")


if __name__ == "__main__":
    main()
