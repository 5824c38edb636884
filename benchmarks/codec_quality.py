"""How well compressed embeddings approximate the originals: our index vs the reference's, same documents.

    python benchmarks/codec_quality.py --out benchmarks/results/codec_quality.json

Encodes the 1,000 documents of ../shared/compat/collection-scifact1k.tsv with the MiniLM checkpoint (fp32, as the
reference's indexer sees them), builds our index of them (nbits 2, the reference's settings), decompresses every
embedding of both our index and the reference-built ../shared/compat/index-scifact1k-nbits2, and reports the mean
cosine with the originals, plus both indexes' layout (files, dtypes, shapes, bytes per embedding).
"""

from __future__ import annotations

import argparse
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


def layout(path: Path) -> dict:
    files = {}
    for f in sorted(path.iterdir()):
        if f.suffix == ".pt":
            obj = torch.load(f, weights_only=True)
            objs = obj if isinstance(obj, tuple) else (obj,)
            files[f.name] = [f"{o.dtype} {tuple(o.shape)}" for o in objs]
        else:
            files[f.name] = "json"
    return files


def mean_cosine(index_dir: Path, originals: torch.Tensor, nbits: int) -> tuple[float, float]:
    from colbert.index.codec import ResidualCodec
    from colbert.index.loaded import LoadedIndex

    index = LoadedIndex.open(index_dir)
    codes, residuals, _ = index.lookup(torch.arange(index.num_passages))
    codec = ResidualCodec(index.centroids, index.bucket_cutoffs, index.bucket_weights, index.avg_residual, nbits)
    cosine = (codec.decompress(codes, residuals) * originals).sum(-1)
    size = sum(f.stat().st_size for f in index_dir.iterdir())
    return float(cosine.mean()), size / index.num_embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "results" / "codec_quality.json"))
    args = parser.parse_args()
    from colbert import ColBERTConfig, Indexer, Run, RunConfig
    from colbert.data import Collection
    from colbert.modeling.checkpoint import Checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = str(Path(tmp) / "minilm-colbert")
        subprocess.run([sys.executable, str(COMPAT / "build_checkpoint.py"), checkpoint], check=True,
                       capture_output=True)
        docs = Collection(path=COMPAT / "collection-scifact1k.tsv").data
        originals, doclens = Checkpoint(checkpoint, verbose=0).docFromText(docs, bsize=64, keep_dims="flatten")
        start = time.perf_counter()
        with Run().context(RunConfig(nranks=1, root=tmp, experiment="codec")):
            ours = Indexer(checkpoint, config=ColBERTConfig(nbits=2), verbose=0).index(
                "ours", str(COMPAT / "collection-scifact1k.tsv"))
        seconds = time.perf_counter() - start
        ours_cos, ours_bpe = mean_cosine(Path(ours), originals, 2)
        ref_cos, ref_bpe = mean_cosine(COMPAT / "index-scifact1k-nbits2", originals, 2)
        result = {
            "benchmark": "codec_quality", "documents": len(docs), "embeddings": int(originals.shape[0]), "nbits": 2,
            "mean_cosine": {"ours": ours_cos, "reference": ref_cos},
            "bytes_per_embedding": {"ours": ours_bpe, "reference": ref_bpe},
            "our_index_seconds": seconds,
            "layout": {"ours": layout(Path(ours)), "reference": layout(COMPAT / "index-scifact1k-nbits2")},
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "layout"}, indent=2))


if __name__ == "__main__":
    main()
