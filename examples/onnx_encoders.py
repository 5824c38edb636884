"""Export a checkpoint's encoders to ONNX, check them against torch, and search with queries encoded by
onnxruntime.

    python examples/onnx_encoders.py --checkpoint colbert-ir/colbertv2.0 --out /tmp/colbert-onnx
    # the same export from the shell: colbert export onnx colbert-ir/colbertv2.0 /tmp/colbert-onnx

Prints the largest difference between torch and the fp32 / int8 ONNX models on a few queries and documents, then
indexes the first --docs SciFact passages and searches them with a Searcher whose checkpoint is an OnnxCheckpoint.
Needs `pip install colbert-ai[onnx]`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from colbert import Checkpoint, ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.data import Collection
from colbert.export.onnx import OnnxCheckpoint, export_onnx

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="colbert-ir/colbertv2.0")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="colbert-onnx-"))
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--query", default="Anemia is associated with increased mortality in heart failure.")
    args = parser.parse_args()

    torch_ckpt = Checkpoint(args.checkpoint, verbose=0)
    export_onnx(torch_ckpt, args.out)
    fp32, int8 = OnnxCheckpoint(args.out), OnnxCheckpoint(args.out, int8=True)
    full = Collection(path=SCIFACT / "collection.tsv")
    texts = [full[p] for p in range(args.docs)]
    Q = torch_ckpt.queryFromText([args.query])
    print("query, max |fp32 - torch|:", float((fp32.queryFromText([args.query]) - Q).abs().max()))
    print("query, max |int8 - torch|:", float((int8.queryFromText([args.query]) - Q).abs().max()))
    D, D_fp32 = torch_ckpt.docFromText(texts[:8], keep_dims=False), fp32.docFromText(texts[:8], keep_dims=False)
    print("documents, max |fp32 - torch|:", max(float((a - b).abs().max()) for a, b in zip(D, D_fp32)))

    with Run().context(RunConfig(nranks=1, root=tempfile.mkdtemp(), experiment="onnx")):
        index = Indexer(args.checkpoint, config=ColBERTConfig(nbits=2), verbose=0).index("scifact", texts)
    searcher = Searcher(index, verbose=0)
    expected = searcher.search(args.query, k=5)[0]
    searcher.checkpoint = int8  # queries now go through onnxruntime's int8 model
    print("top-5 with torch queries:", expected)
    print("top-5 with int8 queries: ", searcher.search(args.query, k=5)[0])


if __name__ == "__main__":
    main()
