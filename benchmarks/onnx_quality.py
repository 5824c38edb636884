"""Retrieval quality of the ONNX encoders (fp32 and int8 dynamically quantised) against torch fp32, on SciFact.

    python benchmarks/onnx_quality.py          # -> benchmarks/results/onnx_quality.json

MiniLM ColBERT checkpoint (built from ../shared/compat), exported with colbert.export.onnx. Two set-ups, each over
the 300 SciFact queries:

- `index`: queries encoded by each encoder, searched exactly (MaxSim over every decompressed embedding) on the
  reference-built 1,000-passage index (../shared/compat/index-scifact1k-nbits2), whose documents torch encoded;
- `brute_force`: queries and the 1,000 documents both encoded by each encoder, scored by exhaustive fp32 MaxSim
  (no compression): what a pipeline running only the int8 models gets.

Torch bf16 (CPU autocast) is measured too, as a yardstick of how much a small perturbation reorders this model's
top-10 (its scores are close together: the head of this checkpoint is untrained).

Reported per encoder: how many queries get torch fp32's top-10 (same ids, same order), the same top-10 set, the same
top-1, the mean overlap@10 with torch fp32's top-10, and nDCG@10 (ir_measures; qrels restricted to the 1,000 passages, queries without a relevant passage among them
dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
COMPAT = SHARED / "compat"


def ndcg10(top: dict[str, list[str]], scores: dict[str, list[float]], qrels: list[tuple[str, str, int]]) -> float:
    import ir_measures
    from ir_measures import nDCG

    judged = {q for q, _, _ in qrels}
    run = [ir_measures.ScoredDoc(q, d, s) for q in top if q in judged for d, s in zip(top[q], scores[q])]
    return float(ir_measures.calc_aggregate([nDCG @ 10], [ir_measures.Qrel(*r) for r in qrels], run)[nDCG @ 10])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "onnx_quality.json"))
    args = parser.parse_args()
    checkpoint = args.checkpoint or tempfile.mkdtemp(prefix="minilm-colbert-")
    if args.checkpoint is None:
        subprocess.run([sys.executable, str(COMPAT / "build_checkpoint.py"), checkpoint], check=True,
                       capture_output=True)

    from colbert import Checkpoint, Searcher
    from colbert.export.onnx import OnnxCheckpoint, export_onnx
    from colbert.modeling.scoring import colbert_score_packed

    searcher = Searcher(str(COMPAT / "index-scifact1k-nbits2"), checkpoint=checkpoint, verbose=0)
    torch_ckpt = searcher.checkpoint
    t0 = time.perf_counter()
    out = export_onnx(torch_ckpt, tempfile.mkdtemp(prefix="colbert-onnx-"))
    export_s = time.perf_counter() - t0
    encoders: dict[str, Checkpoint] = {"torch_fp32": torch_ckpt, "torch_bf16": torch_ckpt,
                                       "onnxruntime_fp32": OnnxCheckpoint(out),
                                       "onnxruntime_int8": OnnxCheckpoint(out, int8=True)}
    pairs = [line.split("\t")[:2] for line in (SHARED / "data/scifact/queries.tsv").read_text().splitlines()]
    qids, texts = [q for q, _ in pairs], [t for _, t in pairs]
    pid_to_doc = dict(line.split("\t") for line in (COMPAT / "pid_map-scifact1k.tsv").read_text().splitlines())
    in_subset = set(pid_to_doc.values())
    qrels = [(q, d, int(r)) for q, d, r in (line.split("\t")[:3] for line in
                                           (SHARED / "data/scifact/qrels.tsv").read_text().splitlines())
             if d in in_subset]
    docs = [line.split("\t", 1)[1].rstrip("\n") for line in
            (COMPAT / "collection-scifact1k.tsv").read_text(encoding="utf-8").splitlines()]

    result: dict = {"benchmark": "onnx_quality", "queries": len(qids), "passages": len(docs),
                    "judged_queries": len({q for q, _, _ in qrels}), "export_seconds": export_s, "setups": {}}
    for setup in ("index", "brute_force"):
        tops: dict[str, dict[str, list[str]]] = {}
        rows = {}
        for name, encoder in encoders.items():
            context = torch.autocast("cpu", dtype=torch.bfloat16) if name == "torch_bf16" else contextlib.nullcontext()
            with context:
                Q = encoder.queryFromText(texts, bsize=128).float()  # (300, 32, 128)
            top, scores = {}, {}
            if setup == "index":
                for qid, q in zip(qids, Q):
                    ids, _, s = searcher.dense_search(q, 10, exact=True)
                    top[qid], scores[qid] = [pid_to_doc[str(p)] for p in ids], s
            else:
                with context:
                    D, doclens = encoder.docFromText(docs, bsize=64, keep_dims="flatten")[:2]
                lengths = torch.tensor(doclens)
                for qid, q in zip(qids, Q):
                    all_scores = colbert_score_packed(q.float(), D.float(), lengths)  # (1000,)
                    best = all_scores.topk(10)
                    top[qid] = [pid_to_doc[str(int(p))] for p in best.indices]
                    scores[qid] = best.values.tolist()
            tops[name] = top
            rows[name] = {"ndcg@10": ndcg10(top, scores, qrels)}
        for name in encoders:
            same = sum(tops[name][q] == tops["torch_fp32"][q] for q in qids)
            same_set = sum(set(tops[name][q]) == set(tops["torch_fp32"][q]) for q in qids)
            overlap = sum(len(set(tops[name][q]) & set(tops["torch_fp32"][q])) for q in qids) / (10 * len(qids))
            top1 = sum(tops[name][q][:1] == tops["torch_fp32"][q][:1] for q in qids)
            rows[name].update(same_top10=same, same_top10_share=same / len(qids), same_top10_set=same_set,
                              same_top1=top1, overlap_at_10=overlap)
        result["setups"][setup] = rows
        print(setup, json.dumps(rows, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
