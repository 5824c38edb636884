"""Encoder memory chunk after chunk: does encoding many chunks leave more memory behind than encoding one?

    python benchmarks/encode_memory.py --out benchmarks/results/encode_memory.json

Encodes `--chunks` chunks of `--chunk-docs` short synthetic documents (the chunks of a 100k-document build: 5,825
documents at doc_maxlen 180), trimming the allocator between chunks as the build does, in three processes: glibc's
defaults, `MALLOC_ARENA_MAX=2`, and `MALLOC_MMAP_THRESHOLD_=1048576` (a fixed threshold: every block of 1 MiB or
more is mapped on its own and given back when freed). Per chunk: the resident memory after it (VmRSS) and the
process's high-water mark (VmHWM), in MiB, and the seconds so far.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from index import SHARED, WORK, synthetic_tsv  # noqa: E402  (the same synthetic documents and checkpoint)

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
from colbert import ColBERTConfig
from colbert.data import Collection
from colbert.indexing.encoder import encode_passages
from colbert.indexing.memory import release_free_memory
from colbert.infra.device import indexing_uses_bf16
from colbert.modeling.checkpoint import Checkpoint
def status():
    values = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            values[key] = int(value.split()[0]) / 1024
    return values
checkpoint, tsv, chunk_docs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ckpt = Checkpoint(checkpoint, colbert_config=ColBERTConfig(doc_maxlen=180), verbose=0)
docs = Collection(path=tsv).data
rows, t0 = [], time.perf_counter()
for k in range(len(docs) // chunk_docs):
    embeddings, doclens = encode_passages(ckpt, docs[k * chunk_docs:(k + 1) * chunk_docs], 64, show_progress=False,
                                          bf16=indexing_uses_bf16(ckpt.colbert_config, ckpt.device))
    del embeddings, doclens
    release_free_memory()
    s = status()
    rows.append({"chunk": k, "seconds": time.perf_counter() - t0, "rss_mib": s["VmRSS"], "peak_mib": s["VmHWM"]})
print(json.dumps(rows))
"""

VARIANTS = {"glibc defaults": {}, "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
            "MALLOC_MMAP_THRESHOLD_=1048576": {"MALLOC_MMAP_THRESHOLD_": "1048576"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--chunk-docs", type=int, default=5825)
    parser.add_argument("--words", type=int, nargs=2, default=[4, 12], metavar=("MIN", "MAX"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "encode_memory.json"))
    args = parser.parse_args()
    checkpoint = args.checkpoint or str(WORK / "minilm-colbert")
    if not Path(checkpoint, "artifact.metadata").exists():
        subprocess.run([sys.executable, str(SHARED / "compat" / "build_checkpoint.py"), checkpoint], check=True)
    result = {"benchmark": "encode_memory", "threads": args.threads, "chunk_docs": args.chunk_docs,
              "words": args.words, "command": "python benchmarks/encode_memory.py " + " ".join(sys.argv[1:]),
              "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tsv = synthetic_tsv(args.chunks * args.chunk_docs, Path(tmp), tuple(args.words))
        for name, env in VARIANTS.items():
            done = subprocess.run([sys.executable, "-c", CHILD, checkpoint, str(tsv), str(args.chunk_docs),
                                   str(args.threads)], env={**os.environ, **env}, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            result["runs"][name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(name, [(round(r["rss_mib"]), round(r["peak_mib"])) for r in result["runs"][name]], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
