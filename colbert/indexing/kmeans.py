"""Centroids (k-means, no faiss) and nearest-centroid codes: seeded, deterministic, L2-normalised, fp16 as stored.

On CUDA, k-means is fastkmeans (its Triton kernels). On CPU it is `lloyd`, the same algorithm from the same starting
points with exact assignments, through our own matmul-and-refine path: fastkmeans' CPU loop computes distances
block by block in torch and reduces them with `torch.min`, which took as long as the matmul itself. On the SciFact
sample (262,144 points, 8,192 centroids, 4 iterations, 2 threads) `lloyd` took 5.8 s with its bf16 screen against
15.0 s for fastkmeans in bf16 (an earlier session's measurement), with a slightly better fit (mean best cosine
0.8078 vs 0.8075), and without the copy of the points fastkmeans makes (`data ** 2`, 64 MiB at that size).
`tests/test_indexing.py` checks `lloyd` against fastkmeans in float32: the same centroids.

Assignments and codes (`nearest_centroids`) on a CPU with native bf16 screen the centroids with a low-precision
matmul (int8 on x86 CPUs with VNNI where torch has `torch._int_mm`, else bf16) and re-score the few within a proven error bound of the
best in float32 (`kernels.refine_codes`): the codes are the float32 ones. `python benchmarks/screen.py` times the
two screens against each other.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Iterator, Protocol, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from colbert import kernels

logger = logging.getLogger(__name__)

KMEANS_SEED = 123  # the reference's faiss seed


class Rows(Protocol):
    """Points on disk read a window at a time (`format.ChunkEmbeddings`): what `lloyd` streams instead of a
    tensor, so the sample need not be in memory."""

    shape: tuple[int, int]

    def rows(self, start: int, end: int) -> Tensor: ...

    def take(self, wanted: Tensor, size: int) -> Iterator[Tensor]: ...


Points = Union[Tensor, Rows]


def train_centroids(sample: Points, num_partitions: int, niters: int, device: torch.device,
                    seed: int = KMEANS_SEED, bf16: bool = False) -> Tensor:
    """k-means on the sample (a tensor, or `Rows` on disk that `lloyd` streams); returns L2-normalised centroids
    rounded to fp16 (what the index stores and search uses), as float16. On CPU `lloyd` (with `bf16`, its
    assignments screened in int8 or bf16, the same result); on CUDA fastkmeans, on the sample read whole.

    Shapes: sample (n, d) -> (num_partitions, d).
    """
    n = sample.shape[0]
    if n < num_partitions:
        raise ValueError(f"k-means needs at least as many sample embeddings ({n:,}) as centroids ({num_partitions:,})")
    logger.info("Clustering %s embeddings into %s centroids (%d iterations)", f"{n:,}", f"{num_partitions:,}", niters)
    if device.type == "cpu":
        centroids = lloyd(sample, num_partitions, niters, seed=seed, bf16=bf16)
    else:
        centroids = _fastkmeans(_rows(sample, 0, n), num_partitions, niters, device, seed)
    return F.normalize(centroids, dim=-1).half()


def _fastkmeans(sample: Tensor, k: int, niters: int, device: torch.device, seed: int) -> Tensor:
    """fastkmeans on `device`. Shapes: sample (n, d) -> (k, d) float32 on CPU, not normalised."""
    from fastkmeans import FastKMeans

    kmeans = FastKMeans(d=sample.size(1), k=k, niter=niters, gpu=device.type == "cuda", seed=seed,
                        max_points_per_centroid=1 << 30, verbose=False,
                        **({"device": device} if device.type == "cuda" else {}))
    points = sample.cpu().half().contiguous().numpy()  # fastkmeans converts each block to its compute dtype
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # fastkmeans reseeds the global RNGs; leave the caller's untouched
        kmeans.train(points)
    np.random.set_state(numpy_state)
    return torch.from_numpy(kmeans.centroids).float()


SCORE_BLOCK = 1 << 22  # centroid scores held at once by nearest_centroids (half as many int32): 16 MiB in fp32, 8
# in bf16 or int32 (int8 screen), whatever C is
PREPARE_ROWS = 1 << 12  # rows nearest_centroids converts to fp32 and quantises at once (2 MiB in fp32 at d = 128)
BF16_UNIT = 2.0 ** -9  # the relative error of one rounding to bfloat16 (8 significant bits, round to nearest)
LLOYD_BLOCK = 1 << 13  # points converted to fp32 at once by lloyd's update (2**13 x 128 x 4 B = 4 MiB)
LLOYD_WINDOW = 1 << 14  # points read at once from Rows on disk (2**14 x 128 x fp16 = 4 MiB)


def bf16_score_slack(rows: Tensor, centroids: Tensor, bias: Tensor | None = None) -> Tensor:
    """Twice a bound on |bf16 score - exact score| for each row against every centroid, when both sides are rounded
    to bfloat16, multiplied with float32 accumulation (as oneDNN's AVX512-BF16 and AMX kernels do) and the product
    is rounded to bfloat16 again (then `bias` added in float32).

    Rounding the inputs moves each term x_k c_k by at most (2u + u^2) |x_k c_k|, so the dot product by at most
    (2u + u^2) |x| |c| (Cauchy-Schwarz), with u = 2^-9; float32 accumulation adds at most d 2^-24 |x| |c|; rounding
    the result adds u |score| <= u (1 + u)^2 |x| |c|; adding a bias in float32 adds at most 2^-24 (|x| |c| + |bias|).
    If every approximate score is within e of the exact one, the true nearest centroid scores at least
    max(approximate) - 2e approximately: a candidate of `refine_codes`.

    Shapes: rows (b, d), centroids (C, d), bias (C,) -> (b,) float32.
    """
    return _slack(rows, *_slack_terms(centroids, bias))


def _slack_terms(centroids: Tensor, bias: Tensor | None) -> tuple[float, float]:
    """What `bf16_score_slack` needs of the centroids and bias, computed once for every batch of rows: the largest
    centroid norm and the largest |bias| (0 without one)."""
    return float(centroids.float().norm(dim=1).max()), 0.0 if bias is None else float(bias.abs().max())


def _slack(rows: Tensor, centroid_norm: float, bias_max: float) -> Tensor:
    u, d = BF16_UNIT, rows.size(1)
    factor = 3 * u + 4 * u * u + (d + 1) * 2.0 ** -24  # >= (2u + u^2) + u (1 + u)^2 + (d + 1) 2^-24
    bound = rows.float().norm(dim=1).mul_(factor * centroid_norm)
    if bias_max:
        bound.add_(2.0 ** -24 * bias_max)
    return bound.mul_(2)


INT8_HALF_STEP = 0.5 + 2.0 ** -16  # |x / scale - round(x / scale)| with x / scale rounded in float32 first


@functools.lru_cache(maxsize=None)
def int8_matmul_available() -> bool:
    """Whether the int8 screen is worth it here: an x86 CPU with VNNI (int8 dot products in hardware, which every
    CPU with AVX512-BF16 or AMX has) and a torch that multiplies int8 matrices on CPU into exact int32
    (`torch._int_mm`). Checked once per process, on a tiny product. Elsewhere (aarch64 among them) the screen is
    bf16."""
    try:
        if not torch.cpu._is_vnni_supported():
            return False
        a = torch.arange(-64, 64, dtype=torch.int8).reshape(4, 32)
        b = torch.arange(64, -64, -1, dtype=torch.int8).reshape(4, 32)
        return bool(torch.equal(torch._int_mm(a, b.T), a.int() @ b.int().T))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def quantize_rows(rows: Tensor, per_row: bool = True) -> tuple[Tensor, Tensor]:
    """Symmetric int8 quantisation: rows ~= q * scale, |q| <= 127 and |rows / scale - q| <= INT8_HALF_STEP; one
    scale per row, or with `per_row=False` one for the whole matrix (a scale of 0 becomes 1).

    Shapes: rows (n, d) float32 -> q (n, d) int8, scale (n,) or () float32."""
    amax = rows.abs().amax(dim=1) if per_row else rows.abs().amax()  # (n,) or ()
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    q = (rows / (scale[:, None] if per_row else scale)).round_().clamp_(-127, 127).to(torch.int8)
    return q, scale


@dataclass
class Int8Centroids:
    """The centroids quantised once for `nearest_centroids`' int8 screen, with one scale for all of them (the bound
    is set by the largest scale either way; one scale lets the screen compare the int32 scores themselves), and the
    terms of `int8_score_slack` that depend on them alone."""

    q: Tensor  # (C, d) int8
    scale: float  # t: centroids ~= q * t
    rounding: float  # t max_c (h |q_c|_1 + d h^2), h = INT8_HALF_STEP
    max_norm: float  # max_c |c|_2 (float32 centroids)

    @classmethod
    def of(cls, centroids: Tensor) -> "Int8Centroids":
        C = centroids.float()
        q, scale = quantize_rows(C, per_row=False)
        h, d, t = INT8_HALF_STEP, C.size(1), float(scale)
        rounding = t * float((h * q.float().abs().sum(dim=1) + d * h * h).max())
        return cls(q, t, rounding, float(C.norm(dim=1).max()))


def int8_score_slack(q: Tensor, scale: Tensor, rows: Tensor, centroids: Int8Centroids,
                     bias: Tensor | None = None) -> Tensor:
    """Twice a bound on |approximate score - exact score| for each row against every centroid, when rows and
    centroids are quantised by `quantize_rows` (x = s (q + delta) per row, c = t (p + eps) for all, |delta|,
    |eps| <= h), their int8 product is exact in int32 and the approximate score is float(q.p) * (s t) + bias in
    float32.

    Quantisation: |x.c - s t q.p| = s t |q.eps + delta.p + delta.eps| <= s t (h |q|_1 + h |p|_1 + d h^2).
    Float32: the scale's product, the score's and the sum add at most 3.01 u |s t q.p| + u |bias| (u = 2^-24), with
    |s t q.p| <= |x| |c| + the bound above; the float32 re-score of `refine_codes` is within (d + 2) u |x| |c| of
    the exact dot product, which the bound adds so that its best is a candidate too.

    Shapes: q (b, d) int8, scale (b,), rows (b, d) float32, bias (C,) -> (b,) float32.
    """
    u, h, d = 2.0 ** -24, INT8_HALF_STEP, rows.size(1)
    quantisation = scale * (h * centroids.scale * q.float().abs().sum(dim=1) + centroids.rounding)  # (b,)
    norms = rows.norm(dim=1) * centroids.max_norm  # (b,) |x| max |c|
    bound = quantisation * (1 + 4 * u) + (d + 6) * u * (norms + quantisation)
    if bias is not None:
        bound = bound + 2 * u * float(bias.abs().max())
    return 2 * bound


def nearest_centroids(embeddings: Tensor, centroids: Tensor, batch: int | None = None, bf16: bool = False,
                      bias: Tensor | None = None) -> Tensor:
    """Code of each embedding: the centroid with the largest float32 dot product (plus `bias`, one float32 per
    centroid), in batches of `batch` rows (default: as many as keep batch x C scores within SCORE_BLOCK, half as many
    with the int8 screen, so memory does not grow with the number of centroids). One score buffer serves every batch
    (a fresh 32 MiB tensor per batch costs its page faults anew).

    With `bf16` (a CPU with native bf16) the batch x C scores come from a low-precision matmul, and
    `kernels.refine_codes` re-scores in float32 the centroids within a proven bound of each row's best: the true
    nearest centroid is always among them, so the codes are the float32 ones. On CPU that matmul is int8
    (`torch._int_mm`; each row quantised with its own scale, the centroids with one; bound `int8_score_slack`),
    on x86 CPUs with AVX512-VNNI where torch has it (`int8_matmul_available`): about 1.7x the bf16 rate, with
    about three candidates a row instead of one or two. Elsewhere it is bf16 (`bf16_score_slack`). Rows are
    converted, quantised and bounded PREPARE_ROWS at a time, then screened a batch at a time.

    Shapes: embeddings (n, d), centroids (C, d), bias (C,) -> (n,) int32.
    """
    C = centroids.float()
    int8 = bf16 and C.device.type == "cpu" and int8_matmul_available()
    batch = batch or max(1, SCORE_BLOCK // C.size(0) // (2 if int8 else 1))  # int32 scores: half the rows, 8 MiB
    C_low = Int8Centroids.of(C) if int8 else C.bfloat16() if bf16 else None
    terms = _slack_terms(C, bias) if bf16 and not int8 else None  # (once: 4 MiB read at 8,192 centroids)
    n = embeddings.size(0)
    codes = torch.empty(n, dtype=torch.int32, device=embeddings.device)
    dtype = torch.int32 if int8 else torch.bfloat16 if bf16 else torch.float32
    scores = torch.empty(min(batch, n), C.size(0), dtype=dtype, device=C.device)
    prepared = batch * max(1, PREPARE_ROWS // batch)  # rows converted, quantised and bounded at once (few dispatches)
    for first in range(0, n, prepared):
        rows = embeddings[first:first + prepared].to(C.device).float()  # (p, d)
        if int8:
            q, scale = quantize_rows(rows)  # (p, d), (p,)
            slack, row_scale = int8_score_slack(q, scale, rows, C_low, bias), scale.mul_(C_low.scale)  # (p,), (p,)
        elif bf16:
            slack = _slack(rows, *terms)  # (p,)
        for at in range(0, rows.size(0), batch):
            block = rows[at:at + batch]  # (b, d)
            out = scores[:block.size(0)]  # (b, C)
            if int8:
                torch._int_mm(q[at:at + batch], C_low.q.T, out=out)
                best = kernels.refine_codes(out, slack[at:at + batch], block, C, bias,
                                            row_scale=row_scale[at:at + batch])  # (b,)
            elif bf16:
                torch.mm(block.bfloat16(), C_low.T, out=out)
                best = kernels.refine_codes(out, slack[at:at + batch], block, C, bias)  # (b,)
            elif bias is None:
                best = torch.mm(block, C.T, out=out).argmax(dim=1)  # (b,)
            else:
                best = torch.addmm(bias, block, C.T, out=out).argmax(dim=1)  # (b,)
            codes[first + at:first + at + block.size(0)] = best.to(torch.int32)
    return codes


def _rows(points: Points, start: int, end: int) -> Tensor:
    return points[start:end] if isinstance(points, Tensor) else points.rows(start, end)


def _take(points: Points, index: Tensor) -> Tensor:
    """points[index] as float32, reading `points` window by window in ascending order (windows with no wanted row
    are not read). Shapes: index (m,) int64 -> (m, d) float32."""
    if isinstance(points, Tensor):
        return points[index].float()
    order = index.argsort()
    out = torch.empty(index.numel(), points.shape[1])
    first = 0
    for piece in points.take(index[order], LLOYD_WINDOW):
        out[order[first:first + piece.size(0)]] = piece.float()
        first += piece.size(0)
    return out


def lloyd(points: Points, k: int, niters: int, seed: int = KMEANS_SEED, bf16: bool = False) -> Tensor:
    """Euclidean k-means on CPU, fastkmeans' algorithm with exact assignments: start from k points drawn by
    `randperm(n)` of a generator seeded with `seed` (the points fastkmeans starts from), then `niters` times assign
    every point to its nearest centroid and move each centroid to the mean of its points (one with no point is
    reset to a random point).

    The nearest centroid maximises x.c - |c|^2 / 2; `nearest_centroids` finds it through one matmul into a reused
    buffer and, with `bf16`, a low-precision (int8 or bf16) matmul whose candidates are re-scored in float32, so
    bf16 changes the speed, not the result. `points` may be a tensor or `Rows` on disk: each iteration reads them
    twice, `LLOYD_WINDOW` rows at a time, the same arithmetic in the same order either way. Memory: one (k, d) buffer for the centroids
    and their sums, one score buffer, an int32 code per point, and the points when they are a tensor.

    Shapes: points (n, d), any float dtype -> (k, d) float32, not normalised.
    """
    n, d = points.shape
    generator = torch.Generator().manual_seed(seed)
    centroids = _take(points, torch.randperm(n, generator=generator)[:k])  # (k, d)
    codes = torch.empty(n, dtype=torch.int32)
    for _ in range(niters):
        bias = -0.5 * centroids.pow(2).sum(dim=1)  # (k,)
        for start in range(0, n, LLOYD_WINDOW):
            window = _rows(points, start, start + LLOYD_WINDOW)
            codes[start:start + window.size(0)] = nearest_centroids(window, centroids, bf16=bf16, bias=bias)
            del window  # (a mapped window is unmapped)
        sums = centroids.zero_()  # (k, d): the centroids' own buffer, no longer needed (one (k, d) tensor in all)
        for start in range(0, n, LLOYD_WINDOW):
            window = _rows(points, start, start + LLOYD_WINDOW)
            for at in range(0, window.size(0), LLOYD_BLOCK):
                end = min(at + LLOYD_BLOCK, window.size(0))
                sums.index_add_(0, codes[start + at:start + end].long(), window[at:end].float())
            del window
        counts = torch.bincount(codes, minlength=k)  # (k,)
        centroids = sums.div_(counts.clamp_min(1)[:, None].float())
        empty = (counts == 0).nonzero().squeeze(1)
        if empty.numel():
            centroids[empty] = _take(points, torch.randint(0, n, (empty.numel(),), generator=generator))
    return centroids
