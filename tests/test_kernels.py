"""colbert.kernels: each op through its reference twin and its native kernel against brute force (native also against
the twin); input checks; the loader's tiers; parity with ../shared/compat; (slow) the CUDA sources compile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from unittest.mock import Mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import colbert.kernels as kernels
from colbert.errors import KernelWarning
from colbert.kernels import native, reference

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
INDEX = SHARED / "compat" / "index-scifact1k-nbits2"
IMPLS = ["reference", pytest.param("native", marks=pytest.mark.native)]


def need_native(op: str, device: str = "cpu") -> None:
    backend = native.load()
    if not backend.native[(op, device)]:
        pytest.skip(f"no native {device} kernel for {op}: {backend.reasons[(op, device)]}")


def run(impl: str, op: str, *args, **kwargs):
    """`op` through the reference twin, or its native kernel (skip if not loaded), which must also match the twin."""
    if impl == "reference":
        return getattr(reference, op)(*args, **kwargs)
    need_native(op)
    got, want = getattr(kernels, op)(*args, **kwargs), getattr(reference, op)(*args, **kwargs)
    torch.testing.assert_close(got, want)
    return got


# ---------------------------------------------------------------- random inputs and brute-force oracles


def make_codec(g: torch.Generator, nbits: int, d: int = 128, C: int = 64, dtype=torch.float16):
    """Normalised centroids, sorted cutoffs, the bucket edges, one weight per bucket (mid-bucket)."""
    centroids = F.normalize(torch.randn(C, d, generator=g), dim=-1).to(dtype)
    cutoffs = torch.sort(torch.randn((1 << nbits) - 1, generator=g) * 0.05).values
    edges = torch.cat([cutoffs[:1] - 0.05, cutoffs, cutoffs[-1:] + 0.05])
    return centroids, cutoffs, edges, (edges[:-1] + edges[1:]) / 2


def random_packed(g: torch.Generator, n: int, d: int, nbits: int, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    codes = torch.randint(0, C, (n,), generator=g, dtype=torch.int32)
    return codes, torch.randint(0, 256, (n, d * nbits // 8), generator=g, dtype=torch.uint8)


def random_docs(g: torch.Generator, ndocs: int, maxlen: int = 9, extra: tuple[int, ...] = ()) -> torch.Tensor:
    """(ndocs + len(extra),) document lengths: random ones (some 0), then the `extra` edge cases."""
    return torch.cat([torch.randint(0, maxlen, (ndocs,), generator=g), torch.tensor(extra, dtype=torch.int64)])


def offsets_of(lengths: torch.Tensor) -> torch.Tensor:
    return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])


def brute_compress(residuals: torch.Tensor, cutoffs: torch.Tensor, nbits: int) -> torch.Tensor:
    ids = np.searchsorted(cutoffs.numpy(), residuals.float().numpy(), side="left")  # (n, d) = bucketize
    bits = (ids[..., None] >> np.arange(nbits)) & 1  # (n, d, nbits), least significant bit first
    return torch.from_numpy(np.packbits(bits.reshape(len(ids), -1).astype(np.uint8), axis=1))


def brute_decompress(codes, packed, centroids, weights, nbits, normalize=True) -> torch.Tensor:
    bits = np.unpackbits(packed.numpy(), axis=1).reshape(len(packed), -1, nbits)  # (n, d, nbits)
    ids = torch.from_numpy((bits * (1 << np.arange(nbits))).sum(-1))  # (n, d)
    vectors = centroids[codes.long()].float() + weights[ids]
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12) if normalize else vectors


def brute_maxsim(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    docs = scores.float().split(lengths.tolist())
    return torch.tensor([float(doc.amax(dim=0).sum()) if len(doc) else 0.0 for doc in docs])


def brute_centroid_maxsim(cs, codes, offsets, pids, keep) -> torch.Tensor:
    docs = [codes[offsets[p]:offsets[p + 1]].long() for p in pids.tolist()]
    kept = [doc[keep[doc]] if keep is not None else doc for doc in docs]
    best = [cs[k].amax(dim=0) if len(k) else torch.full((cs.size(1),), -9999.0) for k in kept]
    return torch.stack([b.clamp_min(-9999.0).sum() for b in best]) if best else torch.zeros(0)


# ---------------------------------------------------------------- each op against brute force, reference and native


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("seed", range(2))
def test_compress_packs_like_numpy_packbits(impl, nbits, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    cutoffs = make_codec(g, nbits)[1]
    residuals = (torch.randn(300, 128, generator=g) * 0.05).to(dtype)
    residuals[0, :len(cutoffs)] = cutoffs.to(dtype)  # a value on a cutoff goes to the lower bucket (right=False)
    residuals[1, :3] = torch.tensor([float("inf"), float("-inf"), float("nan")])  # nan -> last bucket, as bucketize
    for x in (residuals, residuals[:, :64], residuals[:1]):  # a strided view, one embedding
        assert torch.equal(run(impl, "compress_residuals", x, cutoffs, nbits), brute_compress(x, cutoffs, nbits))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("centroid_dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("normalize", [False, True])
def test_decompress_equals_unpackbits_lookup(impl, nbits, centroid_dtype, normalize):
    g = torch.Generator().manual_seed(nbits)
    centroids, _, _, weights = make_codec(g, nbits, dtype=centroid_dtype)
    codes, packed = random_packed(g, 257, 128, nbits, len(centroids))
    for codes_, dtype in ((codes, torch.float32), (codes.long(), torch.float16), (codes[:1], torch.float32)):
        packed_ = packed[:len(codes_)]
        got = run(impl, "decompress_residuals", codes_, packed_, centroids, weights, nbits, normalize, dtype)
        want = brute_decompress(codes_, packed_, centroids, weights, nbits, normalize).to(dtype)
        assert got.dtype == dtype
        atol = 0 if not normalize else 1e-6 if dtype == torch.float32 else 1e-3
        torch.testing.assert_close(got, want, rtol=0, atol=atol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_compress_decompress_round_trip_within_bucket_width(impl, nbits, dtype):
    g = torch.Generator().manual_seed(nbits)
    centroids, cutoffs, edges, weights = make_codec(g, nbits, dtype=dtype)
    residuals = (torch.rand(64, 128, generator=g) * (edges[-1] - edges[0]) + edges[0]).to(dtype)  # inside the edges
    codes = torch.randint(0, len(centroids), (64,), generator=g)
    packed = run(impl, "compress_residuals", residuals, cutoffs, nbits)
    rebuilt = run(impl, "decompress_residuals", codes, packed, centroids, weights, nbits, normalize=False)
    error = (rebuilt - centroids[codes].float() - residuals.float()).abs()  # (64, d)
    half_width = (edges[1:] - edges[:-1])[torch.bucketize(residuals.float(), cutoffs)] / 2  # (64, d)
    assert bool((error <= half_width + 1e-4).all())  # weights sit mid-bucket; 1e-4 covers fp16 rounding


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("seed", range(5))
def test_segmented_maxsim_equals_per_document_maxsim(impl, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = random_docs(g, 50, maxlen=40, extra=(0, 1, 3000))  # an empty, a one-token and a long document
    scores = torch.randn(int(lengths.sum()), 32, generator=g).to(dtype)
    torch.testing.assert_close(run(impl, "segmented_maxsim", scores, lengths), brute_maxsim(scores, lengths))


def test_gradients_flow_through_the_public_functions():
    scores = torch.randn(5, 3, requires_grad=True)
    kernels.segmented_maxsim(scores, torch.tensor([2, 3])).sum().backward()
    assert scores.grad is not None and int((scores.grad != 0).sum()) == 6  # one max per (document, column)


@pytest.mark.parametrize("impl", IMPLS)
def test_segmented_maxsim_edge_cases(impl):
    one = torch.tensor([[-0.5, -2.0]])  # one token: plain max, negative kept (no clamping at 0)
    assert run(impl, "segmented_maxsim", one, torch.tensor([1])).tolist() == [-2.5]
    assert run(impl, "segmented_maxsim", torch.zeros(0, 3), torch.tensor([0, 0])).tolist() == [0.0, 0.0]
    assert run(impl, "segmented_maxsim", torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).shape == (0,)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("keep_fraction", [None, 0.1, 0.0])
@pytest.mark.parametrize("seed", range(3))
def test_centroid_maxsim_equals_brute_force(impl, keep_fraction, seed):
    g = torch.Generator().manual_seed(seed)
    lengths, cs = random_docs(g, 299, maxlen=120, extra=(0,)), torch.randn(256, 32, generator=g)  # C 256, Lq 32
    codes = torch.randint(0, 256, (int(lengths.sum()),), generator=g, dtype=torch.int32)
    keep = None if keep_fraction is None else torch.rand(256, generator=g) < keep_fraction
    pids, offsets = torch.randint(0, 300, (200,), generator=g), offsets_of(lengths)
    pids[0] = 299  # the empty document: -9999 per column
    for codes_, pids_ in ((codes, pids), (codes.long(), pids[:1]), (codes, pids[:0])):
        got = run(impl, "centroid_maxsim", cs, codes_, offsets, pids_, keep)
        torch.testing.assert_close(got, brute_centroid_maxsim(cs, codes_, offsets, pids_, keep))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.float16, torch.float32])
def test_gather_segments_equals_concatenation(impl, dtype):
    g = torch.Generator().manual_seed(0)
    lengths = random_docs(g, 99, maxlen=50, extra=(0,))
    values = torch.randint(0, 100, (int(lengths.sum()), 16), generator=g).to(dtype)
    offsets, pids = offsets_of(lengths), torch.randint(0, 100, (64,), generator=g)
    for v, p in ((values, pids), (values[:, 0].contiguous(), pids), (values.view(-1, 4, 4), pids), (values, pids[:0])):
        rows, got_lengths = run(impl, "gather_segments", v, offsets, p)
        assert torch.equal(rows, torch.cat([v[offsets[i]:offsets[i + 1]] for i in p.tolist()] or [v[:0]]))
        assert torch.equal(got_lengths, lengths[p])


def test_gather_segments_reads_a_memory_mapped_tensor(tmp_path):
    torch.save(values := torch.arange(40, dtype=torch.int32).reshape(20, 2), tmp_path / "v.pt")
    mapped = torch.load(tmp_path / "v.pt", mmap=True)
    rows, lengths = kernels.gather_segments(mapped, torch.tensor([0, 5, 20]), torch.tensor([1, 1, 0]))
    assert torch.equal(rows, torch.cat([values[5:], values[5:], values[:5]])) and lengths.tolist() == [15, 15, 5]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("centroid_dtype", [torch.float16, torch.float32])
def test_decompress_maxsim_equals_per_document_maxsim(impl, nbits, centroid_dtype):
    g = torch.Generator().manual_seed(nbits)
    centroids, _, _, weights = make_codec(g, nbits, dtype=centroid_dtype)
    # an empty, a one-token document, and one longer than a native decode block (256 tokens)
    lengths = random_docs(g, 100, maxlen=200, extra=(0, 1, 2500, 0))
    codes, packed = random_packed(g, int(lengths.sum()), 128, nbits, len(centroids))
    Q = F.normalize(torch.randn(32, 128, generator=g), dim=-1)
    D = brute_decompress(codes, packed, centroids, weights, nbits)
    got = run(impl, "decompress_maxsim", Q, codes.long(), packed, lengths, centroids, weights, nbits)
    torch.testing.assert_close(got, brute_maxsim(D @ Q.T, lengths), rtol=0, atol=1e-5)
    assert got[-4] == 0.0 and got[-1] == 0.0
    assert run(impl, "decompress_maxsim", Q, codes[:0], packed[:0], lengths[:0], centroids, weights, nbits).numel() == 0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_decompress_maxsim_rows_names_each_score_terms_row(impl, nbits):
    g = torch.Generator().manual_seed(10 + nbits)
    centroids, _, _, weights = make_codec(g, nbits)
    lengths = random_docs(g, 60, maxlen=200, extra=(0, 1, 700))  # an empty, a one-token and a three-block document
    lengths[0] = 20
    codes, packed = random_packed(g, int(lengths.sum()), 128, nbits, len(centroids))
    codes[5:8], packed[5:8] = codes[4], packed[4]  # four equal rows of document 0: the first of them is the match
    Q = F.normalize(torch.randn(32, 128, generator=g), dim=-1)
    Q[0] = brute_decompress(codes[4:5], packed[4:5], centroids, weights, nbits)[0]  # matches row 4 best
    Q[1] = Q[0]  # two query vectors with the same match
    scores, rows, vectors, first = run(impl, "decompress_maxsim_rows", Q, codes.long(), packed, lengths, centroids,
                                       weights, nbits)
    D = brute_decompress(codes, packed, centroids, weights, nbits)
    plain = kernels.decompress_maxsim(Q, codes.long(), packed, lengths, centroids, weights, nbits)
    torch.testing.assert_close(scores, plain, rtol=0, atol=0 if impl == "native" else 1e-5)
    starts = offsets_of(lengths)
    for doc, length in enumerate(lengths.tolist()):
        if length == 0:
            assert rows[doc].tolist() == [-1] * 32 and scores[doc] == 0.0 and not vectors[doc].any()
            continue
        assert bool(((rows[doc] >= starts[doc]) & (rows[doc] < starts[doc + 1])).all())  # rows of this document
        terms = (D[rows[doc]] * Q).sum(dim=1)  # (Lq,) the matched rows' scores
        best = (D[starts[doc]:starts[doc + 1]] @ Q.T).amax(dim=0)  # (Lq,)
        torch.testing.assert_close(terms, best, rtol=0, atol=1e-5)
    assert rows[0, 0] == 4 and rows[0, 1] == 4 and first[0, 1] == 0
    for doc in range(len(lengths)):  # the first query vector that matched the same row
        expected = [rows[doc].tolist().index(row) for row in rows[doc].tolist()]
        assert first[doc].tolist() == expected
    live = rows >= 0  # (n, Lq)
    decompressed = kernels.decompress_residuals(codes[rows[live]], packed[rows[live]], centroids, weights, nbits)
    torch.testing.assert_close(vectors[live], decompressed, rtol=0, atol=0)  # the rows' vectors, as decompressed


@pytest.mark.gpu
@pytest.mark.native
@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_cuda_kernels_equal_reference(nbits):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda, g = torch.device("cuda"), torch.Generator().manual_seed(nbits)
    centroids, cutoffs, _, weights = make_codec(g, nbits)
    lengths = random_docs(g, 200, maxlen=200, extra=(0, 1, 2500))
    codes, packed = random_packed(g, int(lengths.sum()), 128, nbits, len(centroids))
    residuals, scores = torch.randn(len(codes), 128, generator=g) * 0.05, torch.randn(len(codes), 32, generator=g)
    Q = F.normalize(torch.randn(32, 128, generator=g), dim=-1)  # (Lq, d)
    c_, cut_, w_, len_, codes_, packed_, res_, s_, Q_ = (
        t.to(cuda) for t in (centroids, cutoffs, weights, lengths, codes, packed, residuals, scores, Q))
    calls = {
        "compress_residuals": (lambda m: m.compress_residuals(res_, cut_, nbits), 0),
        "decompress_residuals": (lambda m: m.decompress_residuals(codes_, packed_, c_, w_, nbits), 1e-6),
        "segmented_maxsim": (lambda m: m.segmented_maxsim(s_, len_), 1e-5),
        "decompress_maxsim": (lambda m: m.decompress_maxsim(Q_, codes_, packed_, len_, c_, w_, nbits), 1e-4),
    }
    for op, (call, atol) in calls.items():
        need_native(op, "cuda")
        torch.testing.assert_close(call(kernels).cpu(), call(reference).cpu(), rtol=0, atol=atol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("score_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("C", [1, 50, 64, 1000])  # fewer than a group of 64, one group, groups plus a tail
def test_refine_codes_takes_the_exact_best_among_the_screened(impl, score_dtype, C):
    g = torch.Generator().manual_seed(C)
    centroids = F.normalize(torch.randn(C, 32, generator=g), dim=1)
    x = F.normalize(torch.randn(300, 32, generator=g), dim=1)
    exact = x @ centroids.T  # (n, C)
    approx = (exact + 0.01 * torch.randn(exact.shape, generator=g)).to(score_dtype)  # a noisy screen
    slack = torch.rand(300, generator=g) * 0.05
    slack[:10] = 0.0  # only the approximate best (and its ties) is a candidate
    got = run(impl, "refine_codes", approx, slack, x, centroids)
    a = approx.float()
    candidate = a >= a.max(dim=1, keepdim=True).values - slack[:, None]
    brute = torch.tensor([int(torch.nonzero(row).squeeze(1)[exact[i, row].argmax()]) for i, row in
                          enumerate(candidate)], dtype=torch.int32)
    assert got.dtype == torch.int32 and torch.equal(got, brute)
    wide = run(impl, "refine_codes", approx, torch.full((300,), 10.0), x, centroids)  # every centroid a candidate
    assert torch.equal(wide, exact.argmax(dim=1).to(torch.int32))
    assert run(impl, "refine_codes", approx[:0], slack[:0], x[:0], centroids).shape == (0,)


@pytest.mark.parametrize("impl", IMPLS)
def test_refine_codes_with_a_bias_minimises_euclidean_distance(impl):
    g = torch.Generator().manual_seed(5)
    centroids = torch.randn(300, 16, generator=g) * torch.rand(300, 1, generator=g)  # unnormalised, as k-means means
    x = torch.randn(200, 16, generator=g)
    bias = -0.5 * centroids.pow(2).sum(dim=1)
    approx = (x @ centroids.T).bfloat16()
    got = run(impl, "refine_codes", approx, torch.full((200,), 1e3), x, centroids, bias)  # all candidates
    assert torch.equal(got, torch.cdist(x, centroids).argmin(dim=1).to(torch.int32))
    narrow = run(impl, "refine_codes", approx, torch.zeros(200), x, centroids, bias)  # the best of approx + bias
    assert torch.equal(narrow, (approx.float() + bias).argmax(dim=1).to(torch.int32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("C", [1, 50, 64, 1000])
def test_refine_codes_on_int32_scores_times_a_row_scale(impl, with_bias, C):
    g = torch.Generator().manual_seed(C + with_bias)
    centroids = torch.randn(C, 32, generator=g)
    x = torch.randn(300, 32, generator=g)
    bias = -0.5 * centroids.pow(2).sum(dim=1) if with_bias else None
    exact = x @ centroids.T + (0 if bias is None else bias)  # (n, C)
    scale = torch.rand(300, generator=g) * 1e-3 + 1e-4  # (n,) not powers of two: the roundings matter
    scale[:5] = 0.0  # no scale at all: every score is 0 (+ bias)
    ints = ((x @ centroids.T) / scale.clamp_min(1e-4)[:, None] + torch.randint(-300, 300, exact.shape, generator=g))
    ints = ints.round().to(torch.int32)  # (n, C) an int8 matmul's scores, with noise
    slack = torch.rand(300, generator=g) * 0.5
    slack[5:15] = 0.0  # only the approximate best (and its ties) is a candidate
    got = run(impl, "refine_codes", ints, slack, x, centroids, bias, row_scale=scale)
    a = ints.float() * scale[:, None] + (0 if bias is None else bias)
    candidate = a >= a.max(dim=1, keepdim=True).values - slack[:, None]
    brute = torch.tensor([int(torch.nonzero(row).squeeze(1)[exact[i, row].argmax()]) for i, row in
                          enumerate(candidate)], dtype=torch.int32)
    assert torch.equal(got, brute)
    wide = run(impl, "refine_codes", ints, torch.full((300,), 1e6), x, centroids, bias, row_scale=scale)
    assert torch.equal(wide, exact.argmax(dim=1).to(torch.int32))  # every centroid a candidate


@pytest.mark.parametrize("impl", IMPLS)
def test_refine_codes_int32_threshold_falls_between_integers_as_the_floats_do(impl):
    # candidates are the integers I with float(I) * r >= float(max) * r - slack; the native screen compares the
    # integers against the smallest such I: check it at the edges, where float rounding decides
    r = torch.tensor([0.1, 1 / 3, 3.0, 1e-7])
    best = torch.tensor([1000, 999, 7, 123456])
    ints = (best[:, None] - torch.arange(200)).int()  # (4, 200) scores best, best - 1, ... (vector groups + a tail)
    x = torch.ones(4, 8)
    centroids = torch.arange(200, dtype=torch.float32)[:, None].expand(200, 8).contiguous()  # exact grows with c
    a = ints.float() * r[:, None]
    for k in [*range(1, 20), 63, 64, 65, 127, 128, 150, 198]:
        gap = best.float() * r - (best - k).float() * r  # exactly the gap down to the k-th score below the best
        for slack in (gap, torch.nextafter(gap, gap + 1), torch.nextafter(gap, gap - 1)):
            got = run(impl, "refine_codes", ints, slack, x, centroids, None, row_scale=r)
            last = (a >= a.max(dim=1, keepdim=True).values - slack[:, None]).int().cumsum(1).argmax(1)
            assert torch.equal(got, last.int())  # the last candidate wins: the screen kept exactly the twin's


def test_bf16_codes_with_their_slack_are_the_float32_codes():
    from colbert.index.assign import bf16_score_slack

    g = torch.Generator().manual_seed(0)
    centroids = F.normalize(torch.randn(2048, 128, generator=g), dim=1)
    near = centroids[torch.randint(0, 2048, (4000,), generator=g)]
    x = F.normalize(near + 0.3 * torch.randn(4000, 128, generator=g), dim=1)  # points near a centroid, and far
    approx = x.bfloat16() @ centroids.bfloat16().T
    error = (approx.float() - x @ centroids.T).abs().amax(dim=1)
    slack = bf16_score_slack(x, centroids)
    assert bool((2 * error <= slack).all())  # the bound holds, with the margin the screen needs
    assert torch.equal(kernels.refine_codes(approx, slack, x, centroids), (x @ centroids.T).argmax(1).int())


# ---------------------------------------------------------------- input checks


def test_public_functions_reject_misuse_clearly():
    cutoffs = torch.tensor([0.0])
    with pytest.raises(ValueError, match="nbits must be 1, 2 or 4"):
        kernels.compress_residuals(torch.zeros(2, 8), cutoffs, 3)
    with pytest.raises(ValueError, match="multiple of 8"):
        kernels.compress_residuals(torch.zeros(2, 4), cutoffs, 1)
    with pytest.raises(ValueError, match="needs 3 bucket_cutoffs"):
        kernels.compress_residuals(torch.zeros(2, 8), cutoffs, 2)
    with pytest.raises(TypeError, match="residuals must have dtype"):
        kernels.compress_residuals(torch.zeros(2, 8, dtype=torch.int64), cutoffs, 1)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        kernels.segmented_maxsim([[1.0]], torch.tensor([1]))
    with pytest.raises(ValueError, match="lengths add up to 3"):
        kernels.segmented_maxsim(torch.zeros(2, 4), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="bytes per row"):
        kernels.decompress_residuals(torch.zeros(2, dtype=torch.int32), torch.zeros(2, 3, dtype=torch.uint8),
                                     torch.zeros(4, 8), torch.zeros(2), 1)
    with pytest.raises(TypeError, match="scores must have dtype"):
        kernels.refine_codes(torch.zeros(2, 4, dtype=torch.float16), torch.zeros(2), torch.zeros(2, 8),
                             torch.zeros(4, 8))
    with pytest.raises(ValueError, match="centroids must have shape"):
        kernels.refine_codes(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 8), torch.zeros(4, 6))
    with pytest.raises(ValueError, match="scores has 2 rows"):
        kernels.refine_codes(torch.zeros(2, 4), torch.zeros(3), torch.zeros(2, 8), torch.zeros(4, 8))
    with pytest.raises(ValueError, match="keep has 3 values"):
        kernels.centroid_maxsim(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int32), torch.tensor([0, 3]),
                                torch.tensor([0]), torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("module", [kernels, reference], ids=["public", "reference"])
def test_out_of_range_ids_raise_index_error(module):
    with pytest.raises(IndexError):
        module.decompress_residuals(torch.tensor([7], dtype=torch.int32), torch.zeros(1, 1, dtype=torch.uint8),
                                    torch.zeros(4, 8), torch.zeros(2), 1)
    with pytest.raises(IndexError):
        module.gather_segments(torch.zeros(3), torch.tensor([0, 3]), torch.tensor([1]))
    with pytest.raises(IndexError):
        module.centroid_maxsim(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int32), torch.tensor([0, 3]),
                               torch.tensor([1]))


# ---------------------------------------------------------------- the loader


def run_kernels(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m colbert.kernels` in a fresh process, so COLBERT_KERNELS is read anew."""
    return subprocess.run([sys.executable, "-m", "colbert.kernels", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_forced_reference_mode_uses_no_native_kernel():
    info = json.loads(run_kernels({"COLBERT_KERNELS": "reference"}, "--json").stdout)
    assert info["mode"] == "reference"
    assert all(where.startswith("reference") for op in info["ops"].values() for where in op.values())
    code = "import torch, colbert.kernels as k; print(k.segmented_maxsim(torch.ones(3, 2), torch.tensor([1, 2])))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLBERT_KERNELS": "reference"})
    assert result.stdout.strip() == "tensor([2., 2.])", result.stderr


@pytest.mark.native
def test_forced_native_mode_loads_every_cpu_kernel():
    need_native("decompress_maxsim")  # this process built them, so the subprocess finds them cached
    info = json.loads(run_kernels({"COLBERT_KERNELS": "native"}, "--json").stdout)
    assert info["mode"] == "native" and all(op["cpu"] == "native" for op in info["ops"].values())


@pytest.mark.native
def test_the_kernels_run_on_torchs_threads_with_or_without_openmp():
    # without -fopenmp (the default) colbert::parallel_for runs on torch's inter-op pool, with it on OpenMP: either
    # way on torch.get_num_threads() threads
    need_native("decompress_maxsim")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert kernels.native_cpu_threads() == 2
        torch.set_num_threads(1)
        assert kernels.native_cpu_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert kernels.backend_info()["cpu_threads"] == before


def test_thread_cap_caps_this_threads_kernels_only_and_restores():
    need_native("decompress_maxsim")
    import threading

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with kernels.thread_cap(1):
            assert kernels.native_cpu_threads() == 1
            other: list = []
            thread = threading.Thread(target=lambda: other.append(kernels.native_cpu_threads()))
            thread.start()
            thread.join()
            assert other == [2]  # another thread is not capped
            with kernels.thread_cap(None):
                assert kernels.native_cpu_threads() == 2
            assert kernels.native_cpu_threads() == 1
        assert kernels.native_cpu_threads() == 2
        with pytest.raises(RuntimeError, match="inside"):
            with kernels.thread_cap(1):
                raise RuntimeError("inside")
        assert kernels.native_cpu_threads() == 2
        Q, codes, packed, lengths, centroids, weights, nbits = _maxsim_inputs()
        with kernels.thread_cap(1):
            capped = kernels.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits)
        assert torch.equal(capped, kernels.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_thread_cap_refuses_what_is_not_a_thread_count(bad):
    with pytest.raises(ValueError, match="thread_cap takes a whole number of threads >= 1"):
        with kernels.thread_cap(bad):
            pass


def _maxsim_inputs(n_docs: int = 400, doclen: int = 50, d: int = 128, nbits: int = 2):
    g = torch.Generator().manual_seed(7)
    centroids, _, _, weights = make_codec(g, nbits, d=d, C=64, dtype=torch.float32)
    codes, packed = random_packed(g, n_docs * doclen, d, nbits, 64)
    lengths = torch.full((n_docs,), doclen, dtype=torch.int64)
    Q = F.normalize(torch.randn(32, d, generator=g), dim=-1)
    return Q, codes, packed, lengths, centroids, weights, nbits


def test_parallel_kernels_give_the_same_bits_on_one_and_two_threads():
    need_native("decompress_maxsim")
    Q, codes, packed, lengths, centroids, weights, nbits = _maxsim_inputs()
    before = torch.get_num_threads()
    try:
        answers = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            answers.append((kernels.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits),
                            kernels.decompress_residuals(codes, packed, centroids, weights, nbits),
                            kernels.decompress_maxsim_rows(Q, codes, packed, lengths, centroids, weights, nbits)[:2]))
    finally:
        torch.set_num_threads(before)
    (one, one_d, one_rows), (two, two_d, two_rows) = answers
    assert torch.equal(one, two) and torch.equal(one_d, two_d)
    assert all(torch.equal(a, b) for a, b in zip(one_rows, two_rows))
    torch.testing.assert_close(one, reference.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits))


def test_an_error_in_a_parallel_range_reaches_the_caller_and_the_next_call_works():
    need_native("decompress_maxsim")
    Q, codes, packed, lengths, centroids, weights, nbits = _maxsim_inputs()
    bad = codes.clone()
    bad[-1] = 64  # in the last document: a range far from the first, likely run by the pool's thread
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for _ in range(3):
            with pytest.raises(IndexError, match=rf"codes\[{bad.numel() - 1}\] = 64 is not a centroid id"):
                kernels.decompress_maxsim(Q, bad, packed, lengths, centroids, weights, nbits)
        got = kernels.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, reference.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_runs_the_parallel_kernels_without_the_parents_threads():
    # a child has no pool threads (fork copies only the calling thread): the caller must run the ranges itself
    need_native("decompress_maxsim")
    code = (
        "import os, sys, torch\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_kernels import _maxsim_inputs\n"
        "from colbert import kernels\n"
        "torch.set_num_threads(2)\n"
        "args = _maxsim_inputs()\n"
        "want = kernels.decompress_maxsim(*args)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if torch.equal(kernels.decompress_maxsim(*args), want) else 3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    result = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"


def test_openmp_is_opt_in(monkeypatch):
    monkeypatch.delenv("COLBERT_KERNELS_OPENMP", raising=False)
    assert native.openmp_flags() == []
    monkeypatch.setenv("COLBERT_KERNELS_OPENMP", "1")
    openmp_backend = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    assert native.openmp_flags() == (["-fopenmp"] if sys.platform.startswith("linux") and openmp_backend else [])


def test_unknown_mode_raises_listing_the_three():
    result = run_kernels({"COLBERT_KERNELS": "fast"})
    assert result.returncode != 0
    assert "ValueError: COLBERT_KERNELS='fast' is not one of auto, native, reference" in result.stderr


def test_no_compiler_falls_back_with_a_warning_or_raises_when_forced(monkeypatch):
    monkeypatch.setattr(native, "load_prebuilt", lambda: False)
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.warns(KernelWarning, match=r"no C\+\+ compiler found.*pure-PyTorch kernels are used instead"):
        assert native.load_native("auto").startswith("reference (no C++ compiler")
    with pytest.raises(RuntimeError, match="COLBERT_KERNELS=native"):
        native.load_native("native")


def test_chosen_reference_kernels_warn_about_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.load_native("reference") == "reference (COLBERT_KERNELS=reference)"


def test_failed_build_warns_with_the_compiler_output(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "load_prebuilt", lambda: False)
    monkeypatch.setattr(native, "_ninja_available", lambda: True)
    monkeypatch.setattr(native, "jit_build", build := Mock(side_effect=RuntimeError("ops.cpp:1:1: error: expected id")))
    with pytest.warns(KernelWarning, match="once"), pytest.raises(RuntimeError, match="did not build: ops.cpp:1:1"):
        native.load_native("native")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.load_native("auto").startswith("reference (build failed")
        assert native.load_native("auto").startswith("reference (build failed before")  # not rebuilt in vain
    messages = [str(w.message) for w in caught if issubclass(w.category, KernelWarning)]
    assert any("ops.cpp:1:1: error: expected id" in m for m in messages)
    assert any("failed to build before" in m for m in messages)
    assert build.call_count == 2 and "expected id" in next(tmp_path.rglob(native.FAILED_MARKER)).read_text()


def test_first_build_says_it_runs_once_and_a_cached_one_says_nothing(monkeypatch, tmp_path):
    """Problem: the first use of the native kernels compiled them for ~25 s without a word."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "load_prebuilt", lambda: False)
    monkeypatch.setattr(native, "_ninja_available", lambda: True)

    def fake_build(csrc, directory, with_cuda):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{native.EXTENSION_NAME}.so").write_bytes(b"")

    monkeypatch.setattr(native, "jit_build", fake_build)
    with pytest.warns(KernelWarning, match=r"Compiling the native kernels, once \(~30 s\)"):
        assert native.load_native("auto").startswith("JIT build")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.load_native("auto").startswith("JIT build")


def test_cache_dir_is_keyed_by_torch_cuda_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    cpu, cuda = native.cache_dir("2.13.0", None, "abc"), native.cache_dir("2.13.0", "12.4", "abc")
    assert cpu.parent == tmp_path / "colbert" and cpu != cuda and cpu != native.cache_dir("2.13.0", None, "abd")
    assert len(native.hash_sources(ROOT / "csrc")) == 16


def test_importing_colbert_builds_nothing():
    code = "import colbert, colbert.kernels as k; print(k.native._backend is None)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


# ---------------------------------------------------------------- parity with the reference implementation


@pytest.mark.compat
@pytest.mark.parametrize("module", [kernels, reference], ids=["public", "reference"])
def test_decompression_matches_the_reference_exactly(module):
    if not INDEX.is_dir():
        pytest.skip(f"{INDEX} is missing: the compatibility fixtures live in ../shared beside the checkout")
    stages = np.load(SHARED / "compat" / "plaid_stages.npz")
    offsets = offsets_of(torch.tensor(json.loads((INDEX / "doclens.0.json").read_text())))
    codes, residuals = torch.load(INDEX / "0.codes.pt"), torch.load(INDEX / "0.residuals.pt")
    centroids, (_, bucket_weights) = torch.load(INDEX / "centroids.pt"), torch.load(INDEX / "buckets.pt")
    pids = torch.from_numpy(stages["decompressed_pids"]).long()
    doc_codes, lengths = module.gather_segments(codes, offsets, pids)
    doc_packed, _ = module.gather_segments(residuals, offsets, pids)
    assert lengths.tolist() == stages["decompressed_doclens"].tolist()
    got = module.decompress_residuals(doc_codes, doc_packed, centroids, bucket_weights, 2, normalize=False)
    assert torch.equal(got, torch.from_numpy(stages["decompressed_raw"]))


# ---------------------------------------------------------------- the CUDA sources compile (no GPU needed)


@pytest.mark.slow
def test_cuda_sources_compile(tmp_path):
    """Each csrc/cuda/*.cu compiles with nvcc and torch's headers, and ops.cpp with its CUDA block. A CPU torch wheel
    lacks the generated c10/cuda/impl/cuda_cmake_macros.h (Windows DLL exports only): an empty stand-in is used."""
    from torch.utils import cpp_extension

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    includes = [*cpp_extension.include_paths(), str(ROOT / "csrc")]
    if not any((Path(p) / "c10/cuda/CUDAStream.h").exists() for p in includes):
        pytest.skip("this torch ships no c10/cuda headers")
    if not any((Path(p) / "c10/cuda/impl/cuda_cmake_macros.h").exists() for p in includes):
        (stub := tmp_path / "stub/c10/cuda/impl").mkdir(parents=True)
        (stub / "cuda_cmake_macros.h").write_text("#pragma once\n")
        includes.append(str(tmp_path / "stub"))
    flags = [f"-I{p}" for p in includes] + ["-std=c++20", "-DCOLBERT_WITH_CUDA"]
    for source in sorted((ROOT / "csrc" / "cuda").glob("*.cu")):
        out = str(tmp_path / f"{source.stem}.o")
        cmd = [nvcc, "-c", str(source), "-o", out, *cpp_extension.COMMON_NVCC_FLAGS, *flags, "-Xcompiler", "-fPIC"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{source.name} did not compile:\n{result.stderr[-4000:]}"
    cmd = [os.environ.get("CXX", "c++"), "-c", str(ROOT / "csrc" / "ops.cpp"), "-o", str(tmp_path / "ops.o"), *flags]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"ops.cpp with COLBERT_WITH_CUDA did not compile:\n{result.stderr[-4000:]}"


def test_two_checkouts_with_the_same_sources_build_from_one_copy(tmp_path):
    """ninja's build file names the source paths: building from each checkout's own csrc/ made every other
    checkout rebuild (and hold the build lock); the build directory keeps one copy of the sources instead."""
    first, second = tmp_path / "a" / "csrc", tmp_path / "b" / "csrc"
    for csrc in (first, second):
        (csrc / "cpu").mkdir(parents=True)
        (csrc / "ops.cpp").write_text("// ops\n")
        (csrc / "cpu" / "x.cpp").write_text("// x\n")
    directory = tmp_path / "build"  # what cache_dir gives for these sources
    directory.mkdir()
    assert native.hash_sources(first) == native.hash_sources(second)
    copy = native.stable_sources(first, directory)
    stamp = (copy / "cpu" / "x.cpp").stat().st_mtime_ns
    assert native.stable_sources(second, directory) == copy == directory / "src"
    assert (copy / "cpu" / "x.cpp").stat().st_mtime_ns == stamp  # not copied again: ninja sees nothing new
    assert [p.relative_to(copy) for p in native.source_files(copy, False)] == \
        [p.relative_to(first) for p in native.source_files(first, False)]


def test_a_finished_build_loads_while_a_killed_process_left_the_lock(tmp_path):
    """torch's loader takes the build directory's lock even when there is nothing to build; a process killed then
    (the crash-safety tests kill at random moments) left a lock that made every later process wait 300 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLBERT_")}
    code = "from colbert.kernels import native; print(native.load().source)"
    first = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    if not first.stdout.startswith("JIT build"):
        pytest.skip(f"the native kernels are not JIT-built here: {first.stdout.strip() or first.stderr[-300:]}")
    built = Path(first.stdout.split(" in ", 1)[1].split(" (cached)")[0].strip())
    assert (built / native.BUILT_MARKER).is_file()
    env["TORCH_EXTENSIONS_DIR"] = str(tmp_path)  # a copy of that build, with a stale lock
    copy = tmp_path / "colbert" / built.name
    shutil.copytree(built, copy, ignore=shutil.ignore_patterns(native.BUILD_LOCK))
    (copy / native.BUILD_LOCK).touch()
    second = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.stdout.strip() == f"JIT build of csrc/ in {copy} (cached)", second.stderr[-2000:]
    assert "held by another build" not in second.stderr
