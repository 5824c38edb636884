"""colbert.kernels: reference twins against brute force, native ops against their twins, the loader's tiers, parity
with the reference's decompression (../shared/compat) and, slow, that the CUDA sources compile with nvcc."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import colbert.kernels as kernels
from colbert.kernels import native, reference

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
INDEX = SHARED / "compat" / "index-scifact1k-nbits2"


# ---------------------------------------------------------------- random inputs and brute-force oracles


def make_codec(g: torch.Generator, nbits: int, d: int = 32, C: int = 16, dtype=torch.float16):
    """Normalised centroids, sorted cutoffs, one weight per bucket (inside its bucket)."""
    centroids = F.normalize(torch.randn(C, d, generator=g), dim=-1).to(dtype)
    cutoffs = torch.sort(torch.randn((1 << nbits) - 1, generator=g) * 0.05).values
    edges = torch.cat([cutoffs[:1] - 0.05, cutoffs, cutoffs[-1:] + 0.05])
    weights = (edges[:-1] + edges[1:]) / 2
    return centroids, cutoffs, weights.float()


def random_packed(g: torch.Generator, n: int, d: int, nbits: int, C: int):
    codes = torch.randint(0, C, (n,), generator=g, dtype=torch.int32)
    packed = torch.randint(0, 256, (n, d * nbits // 8), generator=g, dtype=torch.uint8)
    return codes, packed


def brute_compress(residuals: torch.Tensor, cutoffs: torch.Tensor, nbits: int) -> torch.Tensor:
    ids = np.searchsorted(cutoffs.numpy(), residuals.float().numpy(), side="left")  # (n, d) = bucketize
    bits = (ids[..., None] >> np.arange(nbits)) & 1  # (n, d, nbits), least significant bit first
    return torch.from_numpy(np.packbits(bits.reshape(len(ids), -1).astype(np.uint8), axis=1))


def brute_bucket_ids(packed: torch.Tensor, d: int, nbits: int) -> torch.Tensor:
    bits = np.unpackbits(packed.numpy(), axis=1).reshape(len(packed), d, nbits)
    return torch.from_numpy((bits * (1 << np.arange(nbits))).sum(-1))  # (n, d)


def brute_decompress(codes, packed, centroids, weights, nbits, normalize):
    vectors = centroids[codes.long()].float() + weights[brute_bucket_ids(packed, centroids.size(1), nbits)]
    return torch.stack([v / max(float(v.norm()), 1e-12) for v in vectors]) if normalize else vectors


def brute_maxsim(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    docs = scores.float().split(lengths.tolist())
    return torch.tensor([float(doc.amax(dim=0).sum()) if len(doc) else 0.0 for doc in docs])


def random_docs(g: torch.Generator, ndocs: int, maxlen: int = 9, empty: bool = True) -> torch.Tensor:
    lengths = torch.randint(0 if empty else 1, maxlen, (ndocs,), generator=g)
    return lengths


def offsets_of(lengths: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])


def need_native(op: str) -> None:
    backend = native.load()
    if not backend.native[(op, "cpu")]:
        pytest.skip(f"no native CPU kernel for {op}: {backend.reasons[(op, 'cpu')]}")


# ---------------------------------------------------------------- reference twins against brute force


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_compress_packs_like_numpy_packbits(nbits, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    _, cutoffs, _ = make_codec(g, nbits)
    residuals = (torch.randn(37, 32, generator=g) * 0.05).to(dtype)
    residuals[0, :len(cutoffs)] = cutoffs.to(dtype)  # values on a cutoff go to the lower bucket (right=False)
    assert torch.equal(reference.compress_residuals(residuals, cutoffs, nbits), brute_compress(residuals, cutoffs, nbits))


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_decompress_equals_unpackbits_lookup(nbits, normalize, seed):
    g = torch.Generator().manual_seed(seed)
    centroids, _, weights = make_codec(g, nbits)
    codes, packed = random_packed(g, 41, 32, nbits, len(centroids))
    got = reference.decompress_residuals(codes, packed, centroids, weights, nbits, normalize)
    want = brute_decompress(codes, packed, centroids, weights, nbits, normalize)
    torch.testing.assert_close(got, want, rtol=0, atol=0 if not normalize else 1e-6)


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_compress_decompress_round_trip_within_bucket_width(nbits, dtype):
    g = torch.Generator().manual_seed(nbits)
    centroids, cutoffs, weights = make_codec(g, nbits, dtype=dtype)
    edges = torch.cat([cutoffs[:1] - 0.05, cutoffs, cutoffs[-1:] + 0.05])
    residuals = torch.rand(64, 32, generator=g) * (edges[-1] - edges[0]) + edges[0]  # inside the outer edges
    codes = torch.randint(0, len(centroids), (64,), generator=g)
    packed = reference.compress_residuals(residuals.to(dtype), cutoffs, nbits)
    rebuilt = reference.decompress_residuals(codes, packed, centroids, weights, nbits, normalize=False)
    error = (rebuilt - centroids[codes].float() - residuals.to(dtype).float()).abs()
    width = (edges[1:] - edges[:-1]).max()
    assert float(error.max()) <= float(width) + 1e-3


@pytest.mark.parametrize("seed", range(10))
def test_segmented_maxsim_equals_per_document_maxsim(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = random_docs(g, 6, empty=seed % 2 == 0)
    scores = torch.randn(int(lengths.sum()), 4, generator=g)
    torch.testing.assert_close(reference.segmented_maxsim(scores, lengths), brute_maxsim(scores, lengths))


def test_segmented_maxsim_edge_cases():
    one = torch.tensor([[-0.5, -2.0]])  # one token: plain max, negative kept (no clamping at 0)
    assert reference.segmented_maxsim(one, torch.tensor([1])).tolist() == [-2.5]
    assert reference.segmented_maxsim(torch.zeros(0, 3), torch.tensor([0, 0])).tolist() == [0.0, 0.0]
    assert reference.segmented_maxsim(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).shape == (0,)
    long = torch.randn(5000, 8)
    torch.testing.assert_close(reference.segmented_maxsim(long.half(), torch.tensor([5000])),
                               long.half().float().amax(0).sum()[None])


def brute_centroid_maxsim(cs, codes, offsets, pids, keep):
    out = []
    for pid in pids.tolist():
        doc = codes[offsets[pid]:offsets[pid + 1]].long()
        kept = doc[keep[doc]] if keep is not None else doc
        best = cs[kept].amax(dim=0) if len(kept) else torch.full((cs.size(1),), -9999.0)
        out.append(float(torch.clamp_min(best, -9999.0).sum()))
    return torch.tensor(out)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_keep", [False, True])
def test_centroid_maxsim_equals_brute_force(seed, with_keep):
    g = torch.Generator().manual_seed(seed)
    C, Lq = 12, 5
    lengths = random_docs(g, 20)
    codes = torch.randint(0, C, (int(lengths.sum()),), generator=g, dtype=torch.int32)
    cs = torch.randn(C, Lq, generator=g)
    keep = torch.rand(C, generator=g) < 0.3 if with_keep else None
    pids = torch.randint(0, 20, (15,), generator=g)
    got = reference.centroid_maxsim(cs, codes, offsets_of(lengths), pids, keep)
    torch.testing.assert_close(got, brute_centroid_maxsim(cs, codes, offsets_of(lengths), pids, keep))


@pytest.mark.parametrize("seed", range(4))
def test_gather_segments_equals_concatenation(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = random_docs(g, 10)
    values = torch.randint(0, 255, (int(lengths.sum()), 3), generator=g, dtype=torch.uint8)
    offsets, pids = offsets_of(lengths), torch.randint(0, 10, (7,), generator=g)
    rows, got_lengths = reference.gather_segments(values, offsets, pids)
    assert torch.equal(rows, torch.cat([values[offsets[p]:offsets[p + 1]] for p in pids.tolist()]))
    assert torch.equal(got_lengths, lengths[pids])


def test_gather_segments_reads_a_memory_mapped_tensor(tmp_path):
    values = torch.arange(40, dtype=torch.int32).reshape(20, 2)
    torch.save(values, tmp_path / "v.pt")
    mapped = torch.load(tmp_path / "v.pt", mmap=True)
    rows, lengths = kernels.gather_segments(mapped, torch.tensor([0, 5, 20]), torch.tensor([1, 1, 0]))
    assert torch.equal(rows, torch.cat([values[5:], values[5:], values[:5]])) and lengths.tolist() == [15, 15, 5]


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("seed", range(3))
def test_decompress_maxsim_equals_per_document_maxsim(nbits, seed):
    g = torch.Generator().manual_seed(seed)
    centroids, _, weights = make_codec(g, nbits)
    lengths = torch.cat([random_docs(g, 8), torch.tensor([1, 0])])  # a one-token and an empty document
    codes, packed = random_packed(g, int(lengths.sum()), 32, nbits, len(centroids))
    Q = F.normalize(torch.randn(6, 32, generator=g), dim=-1)
    D = brute_decompress(codes, packed, centroids, weights, nbits, normalize=True)
    got = reference.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits)
    torch.testing.assert_close(got, brute_maxsim(D @ Q.T, lengths), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- the public functions: validation


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
    with pytest.raises(ValueError, match="keep has 3 values"):
        kernels.centroid_maxsim(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int32), torch.tensor([0, 3]),
                                torch.tensor([0]), torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("mode", ["public", "reference"])
def test_out_of_range_ids_raise_index_error(mode):
    fn = kernels.decompress_residuals if mode == "public" else reference.decompress_residuals
    with pytest.raises(IndexError):
        fn(torch.tensor([7], dtype=torch.int32), torch.zeros(1, 1, dtype=torch.uint8), torch.zeros(4, 8),
           torch.zeros(2), 1)
    gather = kernels.gather_segments if mode == "public" else reference.gather_segments
    with pytest.raises(IndexError):
        gather(torch.zeros(3), torch.tensor([0, 3]), torch.tensor([1]))


# ---------------------------------------------------------------- native kernels against their reference twins


@pytest.mark.native
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_native_compress_equals_reference(nbits, dtype):
    need_native("compress_residuals")
    g = torch.Generator().manual_seed(nbits)
    _, cutoffs, _ = make_codec(g, nbits, d=128)
    residuals = (torch.randn(1000, 128, generator=g) * 0.05).to(dtype)
    residuals[0, :len(cutoffs)] = cutoffs.to(dtype)
    residuals[1, :3] = torch.tensor([float("nan"), float("inf"), float("-inf")]).to(dtype)
    want = reference.compress_residuals(residuals, cutoffs, nbits)
    assert torch.equal(kernels.compress_residuals(residuals, cutoffs, nbits), want)
    assert torch.equal(kernels.compress_residuals(residuals[:, :64].contiguous(), cutoffs, nbits),
                       reference.compress_residuals(residuals[:, :64], cutoffs, nbits))


@pytest.mark.native
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("centroid_dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("normalize", [False, True])
def test_native_decompress_equals_reference(nbits, centroid_dtype, out_dtype, normalize):
    need_native("decompress_residuals")
    g = torch.Generator().manual_seed(nbits)
    centroids, _, weights = make_codec(g, nbits, d=128, C=64, dtype=centroid_dtype)
    codes, packed = random_packed(g, 777, 128, nbits, 64)
    for codes_ in (codes, codes.long(), codes[:1]):
        packed_ = packed[: len(codes_)]
        got = kernels.decompress_residuals(codes_, packed_, centroids, weights, nbits, normalize, out_dtype)
        want = reference.decompress_residuals(codes_, packed_, centroids, weights, nbits, normalize, out_dtype)
        assert got.dtype == out_dtype
        tol = 0 if not normalize else (1e-6 if out_dtype == torch.float32 else 1e-3)
        torch.testing.assert_close(got, want, rtol=0, atol=tol)


@pytest.mark.native
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_native_segmented_maxsim_equals_reference(seed, dtype):
    need_native("segmented_maxsim")
    g = torch.Generator().manual_seed(seed)
    lengths = torch.cat([random_docs(g, 50, maxlen=40), torch.tensor([0, 1, 3000])])  # empty, one token, long
    scores = torch.randn(int(lengths.sum()), 32, generator=g).to(dtype)
    torch.testing.assert_close(kernels.segmented_maxsim(scores, lengths), reference.segmented_maxsim(scores, lengths))
    empty = torch.zeros(0, dtype=torch.long)
    assert kernels.segmented_maxsim(torch.zeros(0, 32, dtype=dtype), empty).shape == (0,)


@pytest.mark.native
@pytest.mark.parametrize("seed", range(5))
def test_native_centroid_maxsim_equals_reference(seed):
    need_native("centroid_maxsim")
    g = torch.Generator().manual_seed(seed)
    C, Lq, P = 256, 32, 300
    lengths = torch.cat([random_docs(g, P - 1, maxlen=120), torch.tensor([0])])
    codes = torch.randint(0, C, (int(lengths.sum()),), generator=g, dtype=torch.int32)
    cs = torch.randn(C, Lq, generator=g)
    offsets, pids = offsets_of(lengths), torch.randint(0, P, (200,), generator=g)
    pids[0] = P - 1  # the empty document: -9999 per column
    for keep in (None, torch.rand(C, generator=g) < 0.1, torch.zeros(C, dtype=torch.bool)):
        for codes_ in (codes, codes.long()):
            want = reference.centroid_maxsim(cs, codes_, offsets, pids, keep)
            torch.testing.assert_close(kernels.centroid_maxsim(cs, codes_, offsets, pids, keep), want)
    assert kernels.centroid_maxsim(cs, codes, offsets, pids[:0]).shape == (0,)
    with pytest.raises(IndexError):
        kernels.centroid_maxsim(cs, codes, offsets, torch.tensor([P]))


@pytest.mark.native
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.float16, torch.float32, torch.int64])
def test_native_gather_segments_equals_reference(dtype):
    need_native("gather_segments")
    g = torch.Generator().manual_seed(0)
    lengths = torch.cat([random_docs(g, 99, maxlen=50), torch.tensor([0])])
    values = torch.randint(0, 100, (int(lengths.sum()), 16), generator=g).to(dtype)
    offsets, pids = offsets_of(lengths), torch.randint(0, 100, (64,), generator=g)
    for v in (values, values[:, 0].contiguous(), values.reshape(-1, 4, 4)):
        got, want = kernels.gather_segments(v, offsets, pids), reference.gather_segments(v, offsets, pids)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    rows, got_lengths = kernels.gather_segments(values, offsets, pids[:0])
    assert rows.shape == (0, 16) and got_lengths.shape == (0,)


@pytest.mark.native
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("centroid_dtype", [torch.float16, torch.float32])
def test_native_decompress_maxsim_equals_reference(nbits, centroid_dtype):
    need_native("decompress_maxsim")
    g = torch.Generator().manual_seed(nbits)
    centroids, _, weights = make_codec(g, nbits, d=128, C=64, dtype=centroid_dtype)
    # many short docs, an empty one, a one-token one, and one longer than a native decode block (1024 tokens)
    lengths = torch.cat([random_docs(g, 300, maxlen=200), torch.tensor([0, 1, 2500, 0])])
    codes, packed = random_packed(g, int(lengths.sum()), 128, nbits, 64)
    Q = F.normalize(torch.randn(32, 128, generator=g), dim=-1)
    want = reference.decompress_maxsim(Q, codes, packed, lengths, centroids, weights, nbits)
    got = kernels.decompress_maxsim(Q, codes.long(), packed, lengths, centroids, weights, nbits)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert got[-4:-2].tolist()[0] == 0.0 and got[-1] == 0.0
    assert kernels.decompress_maxsim(Q, codes[:0], packed[:0], lengths[:0], centroids, weights, nbits).shape == (0,)


# ---------------------------------------------------------------- the loader


def run_kernels(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m colbert.kernels` in a fresh process, so COLBERT_KERNELS is read anew."""
    return subprocess.run([sys.executable, "-m", "colbert.kernels", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_forced_reference_mode_uses_no_native_kernel():
    result = run_kernels({"COLBERT_KERNELS": "reference"}, "--json")
    info = json.loads(result.stdout)
    assert info["mode"] == "reference"
    assert all(where.startswith("reference") for op in info["ops"].values() for where in op.values())


@pytest.mark.native
def test_forced_native_mode_loads_every_cpu_kernel():
    need_native("decompress_maxsim")
    info = json.loads(run_kernels({"COLBERT_KERNELS": "native"}, "--json").stdout)
    assert info["mode"] == "native" and all(op["cpu"] == "native" for op in info["ops"].values())


def test_unknown_mode_raises_listing_the_three():
    result = run_kernels({"COLBERT_KERNELS": "fast"})
    assert result.returncode != 0
    assert "ValueError: COLBERT_KERNELS='fast' is not one of auto, native, reference" in result.stderr


def test_no_compiler_falls_back_at_info_or_raises_when_forced(monkeypatch, caplog):
    monkeypatch.setattr(native, "load_prebuilt", lambda: False)
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with caplog.at_level(logging.INFO, logger="colbert.kernels.native"):
        assert native.load_native("auto").startswith("reference (no C++ compiler")
    assert {r.levelno for r in caplog.records} == {logging.INFO}
    with pytest.raises(RuntimeError, match="COLBERT_KERNELS=native"):
        native.load_native("native")


def test_failed_build_warns_with_the_compiler_output(monkeypatch, caplog):
    def broken_build(*args):
        raise RuntimeError("ops.cpp:1:1: error: expected unqualified-id")

    monkeypatch.setattr(native, "load_prebuilt", lambda: False)
    monkeypatch.setattr(native, "_ninja_available", lambda: True)
    monkeypatch.setattr(native, "jit_build", broken_build)
    with caplog.at_level(logging.INFO, logger="colbert.kernels.native"):
        assert native.load_native("auto").startswith("reference (build failed")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "expected unqualified-id" in warnings[0].getMessage()
    with pytest.raises(RuntimeError, match="did not build"):
        native.load_native("native")


def test_cache_dir_is_keyed_by_torch_cuda_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    cpu, cuda = native.cache_dir("2.13.0", None, "abc"), native.cache_dir("2.13.0", "12.4", "abc")
    assert cpu.parent == tmp_path / "colbert" and cpu != cuda and cpu != native.cache_dir("2.13.0", None, "abd")
    assert len(native.hash_sources(ROOT / "csrc")) == 16


def test_importing_colbert_builds_nothing():
    code = "import colbert, colbert.kernels, colbert.kernels.native as n; print(n._backend is None)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


# ---------------------------------------------------------------- parity with the reference implementation


@pytest.mark.compat
@pytest.mark.parametrize("mode", ["public", "reference"])
def test_decompression_matches_the_reference_exactly(mode):
    if not INDEX.is_dir():
        pytest.skip(f"{INDEX} is missing: the compatibility fixtures live in ../shared beside the checkout")
    stages = np.load(SHARED / "compat" / "plaid_stages.npz")
    doclens = torch.tensor(json.loads((INDEX / "doclens.0.json").read_text()))
    codes, residuals = torch.load(INDEX / "0.codes.pt"), torch.load(INDEX / "0.residuals.pt")
    centroids = torch.load(INDEX / "centroids.pt")
    _, bucket_weights = torch.load(INDEX / "buckets.pt")
    gather = kernels.gather_segments if mode == "public" else reference.gather_segments
    decompress = kernels.decompress_residuals if mode == "public" else reference.decompress_residuals
    pids = torch.from_numpy(stages["decompressed_pids"]).long()
    doc_codes, lengths = gather(codes, offsets_of(doclens), pids)
    doc_packed, _ = gather(residuals, offsets_of(doclens), pids)
    assert lengths.tolist() == stages["decompressed_doclens"].tolist()
    got = decompress(doc_codes, doc_packed, centroids, bucket_weights, 2, normalize=False)
    assert torch.equal(got, torch.from_numpy(stages["decompressed_raw"]))


# ---------------------------------------------------------------- the CUDA sources compile (no GPU needed)


@pytest.mark.slow
def test_cuda_sources_compile(tmp_path):
    """Compile each csrc/cuda/*.cu to an object with nvcc and torch's headers, and ops.cpp with its CUDA block.

    A CPU-only torch wheel ships the ATen/c10 CUDA headers but not the generated c10/cuda/impl/cuda_cmake_macros.h
    (a CUDA build of torch has it); its content only matters for Windows DLL exports, so an empty stand-in is used.
    """
    from torch.utils import cpp_extension

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    includes = [*cpp_extension.include_paths(), str(ROOT / "csrc")]
    if not any((Path(p) / "c10/cuda/impl/cuda_cmake_macros.h").exists() for p in includes):
        stub = tmp_path / "stub" / "c10" / "cuda" / "impl"
        stub.mkdir(parents=True)
        (stub / "cuda_cmake_macros.h").write_text("#pragma once\n")
        includes.append(str(tmp_path / "stub"))
    if not any((Path(p) / "c10/cuda/CUDAStream.h").exists() for p in includes):
        pytest.skip("this torch ships no c10/cuda headers")
    flags = [f"-I{p}" for p in includes] + ["-std=c++20", "-DCOLBERT_WITH_CUDA", "-Xcompiler", "-fPIC"]
    for source in sorted((ROOT / "csrc" / "cuda").glob("*.cu")):
        cmd = [nvcc, "-c", str(source), "-o", str(tmp_path / f"{source.stem}.o"), *cpp_extension.COMMON_NVCC_FLAGS,
               *flags]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{source.name} did not compile:\n{result.stderr[-4000:]}"
    cxx = os.environ.get("CXX", "c++")
    cmd = [cxx, "-c", str(ROOT / "csrc" / "ops.cpp"), "-o", str(tmp_path / "ops.o"), *flags[:-2], "-fPIC"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"ops.cpp with COLBERT_WITH_CUDA did not compile:\n{result.stderr[-4000:]}"
