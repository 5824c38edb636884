"""Nearest centroids: the code of each embedding, found through one CPU screen strategy chosen once.

Three screens give the same codes, the float32 ones: `exact` (a float32 matmul and argmax), and on CPUs with native
bf16 a low-precision matmul whose candidates `kernels.refine_codes` re-scores in float32, keeping every centroid
within a proven error bound of each row's best: `int8` (`torch._int_mm`, on x86 CPUs with VNNI) or else `bf16`.
`choose_screen` picks one per call site from `bf16` and the device; `python benchmarks/screen.py` times them
(results in docs/indexing.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from colbert import kernels

SCORE_BLOCK = 1 << 22  # centroid scores held at once by nearest_centroids (half as many int32): 16 MiB in fp32, 8
# in bf16 or int32 (int8 screen), whatever C is
PREPARE_ROWS = 1 << 12  # rows nearest_centroids converts to fp32 and quantises at once (2 MiB in fp32 at d = 128)
BF16_UNIT = 2.0 ** -9  # the relative error of one rounding to bfloat16 (8 significant bits, round to nearest)


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


class ExactScreen:
    """float32 scores (plus `bias`), argmax: the reference the other screens reproduce."""

    name = "exact"
    score_dtype = torch.float32
    rows_per_score_block = 1  # float32 scores: SCORE_BLOCK of them per batch

    def __init__(self, C: Tensor, bias: Optional[Tensor]) -> None:
        self.C, self.bias = C, bias

    def prepare(self, rows: Tensor) -> Any:
        """What every batch of these rows needs, computed once for PREPARE_ROWS of them."""
        return None

    def best(self, rows: Tensor, prepared: Any, at: int, end: int, out: Tensor) -> Tensor:
        """Codes of rows[at:end], scoring into `out` (b, C). Shapes: rows (p, d) float32 -> (b,)."""
        block = rows[at:end]  # (b, d)
        if self.bias is None:
            return torch.mm(block, self.C.T, out=out).argmax(dim=1)
        return torch.addmm(self.bias, block, self.C.T, out=out).argmax(dim=1)


class Bf16Screen(ExactScreen):
    """bf16 scores, candidates within `bf16_score_slack` of the best re-scored in float32."""

    name = "bf16"
    score_dtype = torch.bfloat16

    def __init__(self, C: Tensor, bias: Optional[Tensor]) -> None:
        super().__init__(C, bias)
        self.C_low = C.bfloat16()  # (C, d)
        self.terms = _slack_terms(C, bias)  # once: 4 MiB read at 8,192 centroids

    def prepare(self, rows: Tensor) -> Tensor:
        return _slack(rows, *self.terms)  # (p,)

    def best(self, rows: Tensor, slack: Tensor, at: int, end: int, out: Tensor) -> Tensor:
        block = rows[at:end]  # (b, d)
        torch.mm(block.bfloat16(), self.C_low.T, out=out)
        return kernels.refine_codes(out, slack[at:end], block, self.C, self.bias)  # (b,)


class Int8Screen(ExactScreen):
    """int8 scores (rows quantised per row, centroids with one scale), candidates within `int8_score_slack` of
    the best re-scored in float32."""

    name = "int8"
    score_dtype = torch.int32
    rows_per_score_block = 2  # int32 scores: half the rows, so the buffer stays at 8 MiB

    def __init__(self, C: Tensor, bias: Optional[Tensor]) -> None:
        super().__init__(C, bias)
        self.low = Int8Centroids.of(C)

    def prepare(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, scale = quantize_rows(rows)  # (p, d), (p,)
        slack = int8_score_slack(q, scale, rows, self.low, self.bias)  # (p,), before scale is scaled in place
        return q, slack, scale.mul_(self.low.scale)

    def best(self, rows: Tensor, prepared: tuple[Tensor, Tensor, Tensor], at: int, end: int, out: Tensor) -> Tensor:
        q, slack, row_scale = prepared
        torch._int_mm(q[at:end], self.low.q.T, out=out)
        return kernels.refine_codes(out, slack[at:end], rows[at:end], self.C, self.bias,
                                    row_scale=row_scale[at:end])  # (b,)


SCREENS = {screen.name: screen for screen in (ExactScreen, Bf16Screen, Int8Screen)}


def choose_screen(bf16: bool, device: torch.device | str = "cpu") -> str:
    """The screen for a caller that may use low precision (`bf16`: a CPU with native bf16, or a GPU): int8 on a
    CPU where `int8_matmul_available`, else bf16; exact without `bf16`."""
    if not bf16:
        return "exact"
    return "int8" if torch.device(device).type == "cpu" and int8_matmul_available() else "bf16"


def nearest_centroids(embeddings: Tensor, centroids: Tensor, batch: int | None = None, bf16: bool = False,
                      bias: Tensor | None = None, screen: Optional[str] = None) -> Tensor:
    """Code of each embedding: the centroid with the largest float32 dot product (plus `bias`, one float32 per
    centroid), in batches of `batch` rows (default: as many as keep batch x C scores within SCORE_BLOCK, so memory
    does not grow with the number of centroids). One score buffer serves every batch (a fresh 32 MiB tensor per
    batch costs its page faults anew). Rows are converted and prepared for the screen PREPARE_ROWS at a time.

    Args:
        screen: "exact", "bf16" or "int8" (see the module docstring); default `choose_screen(bf16, device)`. Every
            screen gives the same codes.

    Shapes: embeddings (n, d), centroids (C, d), bias (C,) -> (n,) int32.
    """
    C = centroids.float()
    name = screen or choose_screen(bf16, C.device)
    if name not in SCREENS:
        raise ValueError(f"screen must be one of {sorted(SCREENS)}, got {name!r}")
    scorer = SCREENS[name](C, bias)
    batch = batch or max(1, SCORE_BLOCK // C.size(0) // scorer.rows_per_score_block)
    n = embeddings.size(0)
    codes = torch.empty(n, dtype=torch.int32, device=embeddings.device)
    scores = torch.empty(min(batch, n), C.size(0), dtype=scorer.score_dtype, device=C.device)
    prepared = batch * max(1, PREPARE_ROWS // batch)  # rows converted, quantised and bounded at once (few dispatches)
    for first in range(0, n, prepared):
        rows = embeddings[first:first + prepared].to(C.device).float()  # (p, d)
        state = scorer.prepare(rows)
        for at in range(0, rows.size(0), batch):
            end = min(at + batch, rows.size(0))
            best = scorer.best(rows, state, at, end, scores[:end - at])  # (b,)
            codes[first + at:first + end] = best.to(torch.int32)
    return codes
