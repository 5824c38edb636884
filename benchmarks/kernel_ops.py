"""Native kernels against their PyTorch reference twins, on realistic sizes, side by side in one run.

    python benchmarks/kernel_ops.py --out benchmarks/results/kernels.json [--repeats 7] [--threads N]
    python benchmarks/kernel_ops.py --alternate-threads 1,2 --out benchmarks/results/kernels_threads.json

With --alternate-threads, only the native kernels run, each call alternating between the thread counts given
(torch.set_num_threads before each call, the order swapped every round), so the VM's drift hits both alike; it
reports the median wall ms per op and thread count.

Sizes follow the SciFact-1k index of ../shared/compat (157,337 embeddings, dim 128, nbits 2, 4,096 centroids) and
PLAID search defaults (Lq 32; 1,024 to 4,096 candidate documents of ~150 tokens). Inputs are synthetic and seeded,
so the run needs no data. Reports the median wall time (and process CPU time) of each op over `repeats` runs after
one warm-up, and the load average, since other work on the machine inflates wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import colbert.kernels as kernels
from colbert.kernels import native, reference

DIM, NBITS, NUM_CENTROIDS, LQ = 128, 2, 4096, 32
INDEX_EMBEDDINGS = 157_337  # the compat index: 1,000 SciFact documents
CORPUS_DOCS, DOC_TOKENS = 25_000, 150  # a corpus large enough to draw 4,096 candidates from


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def medians_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and median process-CPU milliseconds of fn() over `repeats` runs, after one warm-up (first-touch
    allocations). CPU time sums the threads; it is the steadier number when other work shares the machine."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def alternating_ms(fn: Callable[[], object], threads: list[int], repeats: int) -> dict[int, float]:
    """Median wall ms of fn() per torch thread count, the counts alternating call by call (order swapped each
    round), after one warm-up each."""
    times: dict[int, list[float]] = {t: [] for t in threads}
    for t in threads:
        torch.set_num_threads(t)
        fn()
    for round_ in range(repeats):
        for t in (threads if round_ % 2 == 0 else threads[::-1]):
            torch.set_num_threads(t)
            start = time.perf_counter()
            fn()
            times[t].append(time.perf_counter() - start)
    return {t: statistics.median(ms) * 1000 for t, ms in times.items()}


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def make_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centroids = F.normalize(torch.randn(NUM_CENTROIDS, DIM, generator=g), dim=-1).half()  # (C, d)
    lengths = torch.randint(DOC_TOKENS // 2, DOC_TOKENS * 3 // 2, (CORPUS_DOCS,), generator=g)  # (P,)
    total = int(lengths.sum())
    return {
        "centroids": centroids,
        "cutoffs": torch.tensor([-0.03, 0.0, 0.03]),
        "weights": torch.tensor([-0.05, -0.01, 0.01, 0.05]),
        "residuals": (torch.randn(INDEX_EMBEDDINGS, DIM, generator=g) * 0.03).half(),  # (n, d)
        "codes": torch.randint(0, NUM_CENTROIDS, (total,), generator=g, dtype=torch.int32),  # (N,)
        "packed": torch.randint(0, 256, (total, DIM * NBITS // 8), generator=g, dtype=torch.uint8),  # (N, d/4)
        "offsets": torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]),  # (P + 1,)
        "Q": F.normalize(torch.randn(LQ, DIM, generator=g), dim=-1),  # (Lq, d)
        "pids": torch.randperm(CORPUS_DOCS, generator=g),  # candidates are a prefix of this
    }


def cases(x: dict[str, torch.Tensor]) -> list[tuple[str, str, Callable, Callable]]:
    """(op, size, native call, reference call) for every benchmarked size."""
    n = INDEX_EMBEDDINGS
    codes, packed, cent, w = x["codes"][:n], x["packed"][:n], x["centroids"], x["weights"]
    centroid_scores = cent.float() @ x["Q"].T  # (C, Lq)
    keep = centroid_scores.amax(dim=1) >= 0.2  # (C,) stage 2's threshold keeps a fraction of the centroids
    out = [
        ("compress_residuals", f"{n:,} x {DIM}, nbits {NBITS}",
         lambda: kernels.compress_residuals(x["residuals"], x["cutoffs"], NBITS),
         lambda: reference.compress_residuals(x["residuals"], x["cutoffs"], NBITS)),
        ("decompress_residuals", f"{n:,} x {DIM}, nbits {NBITS}",
         lambda: kernels.decompress_residuals(codes, packed, cent, w, NBITS),
         lambda: reference.decompress_residuals(codes, packed, cent, w, NBITS)),
    ]
    for ncand in (1024, 4096):
        pids = x["pids"][:ncand]
        doc_codes, lengths = reference.gather_segments(x["codes"], x["offsets"], pids)
        doc_packed, _ = reference.gather_segments(x["packed"], x["offsets"], pids)
        scores = (F.normalize(torch.randn(len(doc_codes), DIM), dim=-1) @ x["Q"].T).contiguous()  # (M, Lq)
        size = f"{ncand:,} docs, {len(doc_codes):,} tokens"
        out += [
            ("centroid_maxsim", size + ", keep",
             lambda p=pids: kernels.centroid_maxsim(centroid_scores, x["codes"], x["offsets"], p, keep),
             lambda p=pids: reference.centroid_maxsim(centroid_scores, x["codes"], x["offsets"], p, keep)),
            ("gather_segments", size + ", packed",
             lambda p=pids: kernels.gather_segments(x["packed"], x["offsets"], p),
             lambda p=pids: reference.gather_segments(x["packed"], x["offsets"], p)),
            ("segmented_maxsim", size,
             lambda s=scores, le=lengths: kernels.segmented_maxsim(s, le),
             lambda s=scores, le=lengths: reference.segmented_maxsim(s, le)),
            ("decompress_maxsim", size,
             lambda c=doc_codes, b=doc_packed, le=lengths: kernels.decompress_maxsim(x["Q"], c, b, le, cent, w, NBITS),
             lambda c=doc_codes, b=doc_packed, le=lengths: reference.decompress_maxsim(x["Q"], c, b, le, cent, w,
                                                                                       NBITS)),
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/kernels.json"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--alternate-threads", type=lambda v: [int(t) for t in v.split(",")], default=None,
                        help="thread counts to alternate call by call (e.g. 1,2); native kernels only")
    args = parser.parse_args()
    if args.alternate_threads:
        alternate(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    info = kernels.backend_info()
    load_before = os.getloadavg()  # other work on the machine inflates wall times; recorded for the reader
    rows = []
    for op, size, native_fn, reference_fn in cases(make_inputs()):
        has_native = native.has(op, torch.device("cpu"))
        native_ms, native_cpu_ms = medians_ms(native_fn, args.repeats) if has_native else (None, None)
        reference_ms, reference_cpu_ms = medians_ms(reference_fn, args.repeats)
        speedup = reference_ms / native_ms if native_ms else None
        rows.append({"op": op, "size": size, "native_ms": rounded(native_ms), "reference_ms": rounded(reference_ms),
                     "speedup": rounded(speedup, 1), "native_cpu_ms": rounded(native_cpu_ms),
                     "reference_cpu_ms": rounded(reference_cpu_ms)})
        native_text = f"{native_ms:9.2f}" if native_ms is not None else "      n/a"
        speedup_text = f"{speedup:6.1f}x" if speedup else "     -"
        print(f"{op:<21} {size:<34} native {native_text} ms  reference {reference_ms:9.2f} ms  {speedup_text}",
              flush=True)
    result = {
        "command": "python benchmarks/kernel_ops.py --out " + str(args.out),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "backend": info["source"],
        "repeats": args.repeats,
        "statistic": "median wall ms (and median process CPU ms, all threads) after one warm-up",
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def alternate(args: argparse.Namespace) -> None:
    info = kernels.backend_info()
    load_before = os.getloadavg()
    rows = []
    for op, size, native_fn, _ in cases(make_inputs()):
        if not native.has(op, torch.device("cpu")):
            continue
        ms = alternating_ms(native_fn, args.alternate_threads, max(args.repeats, 15))
        rows.append({"op": op, "size": size, **{f"{t}_threads_ms": rounded(v) for t, v in ms.items()}})
        print(f"{op:<21} {size:<34} " + "  ".join(f"{t} threads {v:8.2f} ms" for t, v in ms.items()), flush=True)
    result = {
        "command": "python benchmarks/kernel_ops.py --alternate-threads "
                   + ",".join(map(str, args.alternate_threads)) + " --out " + str(args.out),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "backend": info["source"],
        "repeats": max(args.repeats, 15),
        "statistic": "median wall ms per thread count, the counts alternating call by call",
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
