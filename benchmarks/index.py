"""Indexing benchmark: ours (nbits 2 and 4) vs pure encoding vs the reference, each in its own process, one run.

    python benchmarks/index.py --out benchmarks/results/index.json
    python benchmarks/index.py --reference-nbits 2 --repeats 3   # medians of 3 rounds; the reference once, at nbits 2
    python benchmarks/index.py --synthetic 100000 --synthetic-base 5000 --synthetic-words 4 12 --nbits 2 \
        --no-reference --out benchmarks/results/index_synthetic.json

Per configuration: wall time, documents/s, peak RSS (VmHWM of the process), bytes per embedding (all index files /
embeddings) with each file's size and the IVF's (centroid, passage) pairs and padding, our time split (encode / kmeans / compress / write) and our high-water mark after each stage of the
build (`peak_rss_mib_after`: the stage whose value first reaches the peak is where it happened). "encode_only"
runs our length-sorted encoder over the same documents and nothing else (model loading included, as in every
run): the baseline for the "indexing <= 1.2x encoding" target, as the median of each round's own ratio
(`total_over_encode_only`). `total_over_own_encoding` is the same comparison inside each build's process: its time
over its time less k-means, compression and writing. The reference runs from its venv
(bash ../shared/reference/setup.sh) when present, on the same documents with ids 0..N-1. --repeats R runs ours in
R interleaved rounds and reports medians.
--synthetic N builds indexes of N short synthetic documents (and of --synthetic-base documents) to show that peak
memory does not grow with the collection.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
WORK = HERE / "_work"

CHILD = r"""
import json, os, sys, time, resource
import torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
mode, checkpoint, tsv, root, nbits, doc_maxlen, amp = sys.argv[1:8]
amp = amp == "1"
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
out = {}
t = time.perf_counter()
if mode == "ours":
    from colbert import ColBERTConfig, Indexer, Run, RunConfig
    import colbert.indexing as build
    stage_peaks = {}  # the process's high-water mark after each stage of build_index: where the peak was reached
    def traced(name, fn):
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            finally:
                stage_peaks[name] = peak_mib()
        return wrapper
    for name in ("_encode_chunk", "train_centroids", "_train_codec", "_compress_chunk", "_finalize"):
        setattr(build, name, traced(name.strip("_"), getattr(build, name)))
    with Run().context(RunConfig(nranks=1, root=root, experiment="bench")):
        indexer = Indexer(checkpoint, config=ColBERTConfig(nbits=int(nbits), doc_maxlen=int(doc_maxlen), amp=amp),
                          verbose=0)
        stage_peaks["load"] = peak_mib()
        path = indexer.index("idx", tsv, overwrite=True)
    out["split_seconds"] = indexer.stats.seconds
    out["peak_rss_mib_after"] = stage_peaks
    from colbert.infra.device import indexing_uses_bf16
    out["bf16"] = indexing_uses_bf16(indexer.config, torch.device("cpu"))
elif mode == "encode_only":
    from colbert.data import Collection
    from colbert.indexing.encoder import encode_passages
    from colbert.modeling.checkpoint import Checkpoint
    from colbert import ColBERTConfig
    from colbert.infra.device import indexing_uses_bf16
    config = ColBERTConfig(doc_maxlen=int(doc_maxlen), amp=amp)
    ckpt = Checkpoint(checkpoint, colbert_config=config, verbose=0)
    docs = Collection(path=tsv).data
    out["bf16"] = indexing_uses_bf16(config, ckpt.device)  # the precision indexing encodes with
    embs, doclens = encode_passages(ckpt, docs, config.index_bsize, show_progress=False, bf16=out["bf16"])
    out["num_embeddings"] = int(embs.shape[0])
    path = None
else:  # the reference, run from its own venv
    from colbert import Indexer
    from colbert.infra import ColBERTConfig, Run, RunConfig
    with Run().context(RunConfig(nranks=1, root=root, experiment="bench", avoid_fork_if_possible=True)):
        indexer = Indexer(checkpoint=checkpoint, config=ColBERTConfig(nbits=int(nbits), doc_maxlen=int(doc_maxlen)))
        path = indexer.index(name="idx", collection=tsv, overwrite="force_silent_overwrite")
out["seconds"] = time.perf_counter() - t
if path:
    meta = json.load(open(os.path.join(path, "metadata.json")))
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    out.update(num_embeddings=meta["num_embeddings"], num_partitions=meta["num_partitions"], index_bytes=size,
               bytes_per_embedding=size / meta["num_embeddings"],
               file_bytes={f: os.path.getsize(os.path.join(path, f)) for f in sorted(os.listdir(path))})
    ivf, ivf_lengths = torch.load(os.path.join(path, "ivf.pid.pt"))  # what the IVF's size is made of
    out.update(ivf_pairs=int(ivf_lengths.sum()), ivf_padding=int(ivf.numel() - ivf_lengths.sum()))
out["peak_rss_mib"] = peak_mib()
print("RESULT " + json.dumps(out))
"""


def run_child(python: str, args: list[str], threads: int, cwd: str) -> dict:
    env = {**os.environ, "BENCH_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": "" if "reference" in python else str(HERE.parent)}
    proc = subprocess.run([python, "-c", CHILD, *args], capture_output=True, text=True, env=env, cwd=cwd)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": proc.stderr[-3000:]}
    return json.loads(lines[-1][len("RESULT "):])


def summarise(runs: list[dict], n: int) -> dict:
    """One configuration's repeats: the median run's fields, the median seconds and peak RSS, and every repeat."""
    ok = [r for r in runs if "seconds" in r]
    if not ok:
        return runs[-1]
    out = dict(sorted(ok, key=lambda r: r["seconds"])[len(ok) // 2])
    out["seconds"] = statistics.median(r["seconds"] for r in ok)
    out["peak_rss_mib"] = statistics.median(r["peak_rss_mib"] for r in ok)
    out["docs_per_s"] = n / out["seconds"]
    own = [own_encoding_ratio(r) for r in ok if r.get("split_seconds")]
    if own:
        out["total_over_own_encoding"] = statistics.median(own)
        out["total_over_own_encoding_per_run"] = own
    if len(runs) > 1:
        out["repeats"] = [{k: r.get(k) for k in ("seconds", "peak_rss_mib", "split_seconds", "error")} for r in runs]
    return out


def own_encoding_ratio(run: dict) -> float:
    """A build's time over the same process's time without what indexing adds to encoding (k-means, compression,
    writing): the encode-only comparison without its second process, which on a noisy machine runs at another
    moment. Loading and imports are in both sides, as in the encode-only run."""
    split = run["split_seconds"]
    return run["seconds"] / (run["seconds"] - split["kmeans"] - split["compress"] - split["write"])


def scifact_tsv(n: int | None, work: Path) -> tuple[Path, int]:
    """The first n SciFact documents with ids 0..n-1 (the reference needs line-number ids)."""
    lines = (SHARED / "data" / "scifact" / "collection.tsv").read_text(encoding="utf-8").splitlines()[:n]
    path = work / f"scifact-{len(lines)}.tsv"
    path.write_text("".join(f"{i}\t{line.split(chr(9), 1)[1]}\n" for i, line in enumerate(lines)), encoding="utf-8")
    return path, len(lines)


def synthetic_tsv(n: int, work: Path, words_range: tuple[int, int], seed: int = 0) -> Path:
    """n documents of words_range[0] to words_range[1] words drawn from SciFact's vocabulary."""
    words = sorted({w for line in (SHARED / "data/scifact/collection.tsv").read_text(encoding="utf-8").splitlines()
                    [:2000] for w in line.split("\t", 1)[1].split() if w.isalpha()})
    rng = random.Random(seed)
    path = work / f"synthetic-{n}.tsv"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f"{i}\t{' '.join(rng.choice(words) for _ in range(rng.randint(*words_range)))}\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--docs", type=int, default=None, help="first N SciFact documents (default: all 5,183)")
    parser.add_argument("--nbits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--doc-maxlen", type=int, default=180)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--synthetic-base", type=int, default=5000)
    parser.add_argument("--synthetic-words", type=int, nargs=2, default=[10, 40], metavar=("MIN", "MAX"),
                        help="words per synthetic document")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of our runs (encode-only and each nbits, interleaved); medians are reported, and "
                             "the encode-only ratio is the median of each round's own ratio. The reference runs once")
    parser.add_argument("--fp32", action="store_true",
                        help="also run ours and the encoder with amp=False (fp32 on CPU; the default uses bf16 where "
                             "the CPU has it natively)")
    parser.add_argument("--reference-nbits", type=int, nargs="+", default=None,
                        help="run the reference only at these nbits (default: every --nbits)")
    parser.add_argument("--reference-python", default=os.path.expanduser("~/.cache/colbert-reference/venv/bin/python"))
    parser.add_argument("--out", default=str(HERE / "results" / "index.json"))
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or str(WORK / "minilm-colbert")
    if not Path(checkpoint, "artifact.metadata").exists():
        subprocess.run([sys.executable, str(SHARED / "compat" / "build_checkpoint.py"), checkpoint], check=True)
    reference = None if args.no_reference or not Path(args.reference_python).exists() else args.reference_python
    result: dict = {"benchmark": "index", "threads": args.threads, "doc_maxlen": args.doc_maxlen, "runs": {},
                    "command": " ".join(["python", "benchmarks/index.py", *sys.argv[1:]]),
                    "load_average_at_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        tmp_path = Path(tmp)
        if args.synthetic:
            words = tuple(args.synthetic_words)
            sizes = (args.synthetic_base, args.synthetic)
            inputs = {f"synthetic-{n}": (synthetic_tsv(n, tmp_path, words), n) for n in sizes}
            result["synthetic_words"] = list(words)
        else:
            inputs = {"scifact": scifact_tsv(args.docs, tmp_path)}
        for name, (tsv, n) in inputs.items():
            precisions = (("", "1"), ("-fp32", "0")) if args.fp32 else (("", "1"),)
            rounds: dict[str, list[dict]] = {}  # our runs, repeated in interleaved rounds (the machine drifts)
            for _ in range(args.repeats):
                for suffix, amp in precisions:
                    if not args.synthetic:  # the synthetic runs measure memory; they skip the encoding baseline
                        rounds.setdefault(f"{name}/encode_only{suffix}", []).append(run_child(
                            sys.executable, ["encode_only", checkpoint, str(tsv), str(tmp_path), "2",
                                             str(args.doc_maxlen), amp], args.threads, str(tmp_path)))
                    for nbits in args.nbits:
                        run = run_child(sys.executable, ["ours", checkpoint, str(tsv), str(tmp_path / "ours"),
                                                         str(nbits), str(args.doc_maxlen), amp],
                                        args.threads, str(tmp_path))
                        rounds.setdefault(f"{name}/ours{suffix}/nbits{nbits}", []).append(run)
                        print(name, "ours" + suffix, nbits, {k: v for k, v in run.items() if k != "error"},
                              flush=True)
            for key, runs in rounds.items():
                result["runs"][key] = summarise(runs, n)
            for nbits in args.nbits:
                if reference is None or (args.reference_nbits is not None and nbits not in args.reference_nbits):
                    continue
                run = run_child(reference, ["reference", checkpoint, str(tsv), str(tmp_path / "reference"),
                                            str(nbits), str(args.doc_maxlen), "1"], args.threads, str(tmp_path))
                result["runs"][f"{name}/reference/nbits{nbits}"] = summarise([run], n)
                print(name, "reference", nbits, {k: v for k, v in run.items() if k != "error"}, flush=True)
            for suffix, _ in precisions:
                encode = rounds.get(f"{name}/encode_only{suffix}")
                for nbits in args.nbits:
                    ours = result["runs"][f"{name}/ours{suffix}/nbits{nbits}"]
                    ref = result["runs"].get(f"{name}/reference/nbits{nbits}", {})
                    mine = rounds[f"{name}/ours{suffix}/nbits{nbits}"]
                    if encode and all("seconds" in r for r in encode + mine):
                        ratios = [o["seconds"] / e["seconds"] for o, e in zip(mine, encode)]  # same round
                        ours["total_over_encode_only_per_round"] = ratios
                        ours["total_over_encode_only"] = statistics.median(ratios)
                    if "seconds" in ref and "seconds" in ours:
                        ours["speedup_vs_reference"] = ref["seconds"] / ours["seconds"]
    result["load_average_at_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
