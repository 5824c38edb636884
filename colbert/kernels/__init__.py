"""The compute kernels of indexing and search, one typed function each: native when loaded for the device, else the
PyTorch reference twin in `colbert.kernels.reference`.

Each docstring is the contract; native and reference agree on it (to float rounding) and raise the same ValueError /
TypeError on misuse. The native ops have no backward, so a call whose float inputs require grad (with grad mode on)
takes the differentiable reference path. Loading is lazy (`colbert.kernels.native`): importing this module builds
nothing and queries no GPU. `python -m colbert.kernels` prints `backend_info()`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
from torch import Tensor

from colbert.kernels import native, reference

__all__ = [
    "backend_info",
    "centroid_maxsim",
    "compress_residuals",
    "decompress_maxsim",
    "decompress_maxsim_rows",
    "decompress_residuals",
    "gather_segments",
    "mmr",
    "refine_codes",
    "segmented_maxsim",
    "thread_cap",
]

FLOATS = (torch.float16, torch.bfloat16, torch.float32)
INDEXES = (torch.int32, torch.int64)
NBITS = (1, 2, 4)


def _tensor(name: str, value: Any, ndim: int, dtypes: tuple[torch.dtype, ...] | None = None) -> Tensor:
    """Check that `value` is a tensor with `ndim` dims (at least 1 when ndim is -1) and one of `dtypes`."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if (ndim >= 0 and value.dim() != ndim) or (ndim < 0 and value.dim() == 0):
        wanted = f"{ndim}-D" if ndim >= 0 else "at least 1-D"
        raise ValueError(f"{name} must be {wanted}, got shape {tuple(value.shape)}")
    if dtypes is not None and value.dtype not in dtypes:
        names = ", ".join(str(t).removeprefix("torch.") for t in dtypes)
        raise TypeError(f"{name} must have dtype {names}; got {value.dtype}. Convert it with .to(...) first.")
    return value


def _int64(name: str, value: Any) -> Tensor:
    """A 1-D int32/int64 tensor of ids, offsets or lengths, as int64 (no copy when it already is)."""
    return _tensor(name, value, 1, INDEXES).long()


def _nbits(nbits: Any, dim: int) -> int:
    if nbits not in NBITS or isinstance(nbits, bool):
        raise ValueError(f"nbits must be 1, 2 or 4, got {nbits!r}")
    if dim * nbits % 8:
        raise ValueError(f"dim * nbits must be a multiple of 8 to pack whole bytes, got dim {dim} and nbits {nbits}")
    return int(nbits)


def _same_device(**tensors: Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"all inputs must be on one device, got {listing}")


def _needs_grad(*tensors: Tensor) -> bool:
    """The native ops have no backward: route differentiable calls through the reference twin."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _lengths(lengths: Tensor, total: int, rows: str) -> None:
    """Check that `lengths` are >= 0 and add up to the `total` rows of `rows`."""
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got {int(lengths.min())}")
    if int(lengths.sum()) != total:
        raise ValueError(f"lengths add up to {int(lengths.sum()):,} but {rows} has {total:,} rows")


def _codec(codes: Tensor, packed: Tensor, centroids: Tensor, bucket_weights: Tensor, nbits: int) -> int:
    """Checks shared by the two decompressing kernels; returns nbits."""
    _tensor("codes", codes, 1, INDEXES)
    _tensor("packed", packed, 2, (torch.uint8,))
    _tensor("centroids", centroids, 2, FLOATS)
    _tensor("bucket_weights", bucket_weights, 1, (torch.float32,))
    nbits = _nbits(nbits, centroids.size(1))
    if len(packed) != len(codes):
        raise ValueError(f"packed has {len(packed):,} rows but codes has {len(codes):,}")
    if packed.size(1) != centroids.size(1) * nbits // 8:
        raise ValueError(
            f"packed has {packed.size(1)} bytes per row but dim {centroids.size(1)} at nbits {nbits} needs "
            f"{centroids.size(1) * nbits // 8}; are nbits and the centroids from the same index?"
        )
    if bucket_weights.numel() != 1 << nbits:
        raise ValueError(f"nbits {nbits} needs {1 << nbits} bucket_weights, got {bucket_weights.numel()}")
    _same_device(codes=codes, packed=packed, centroids=centroids, bucket_weights=bucket_weights)
    return nbits


def compress_residuals(residuals: Tensor, bucket_cutoffs: Tensor, nbits: int) -> Tensor:
    """Quantise each residual dimension to a bucket id and pack the ids, `nbits` per dimension, into bytes.

    Bucket id = `torch.bucketize(residual.float(), bucket_cutoffs)` (right=False; cutoffs sorted ascending). Each
    id is written least-significant bit first and each row's bit string is packed MSB first (`numpy.packbits`):
    exactly the reference's `{chunk}.residuals.pt`.

    Args:
        residuals: embedding minus its centroid, float16/bfloat16/float32.
        bucket_cutoffs: the index's cutoffs (`buckets.pt`), float32.
        nbits: bits per dimension: 1, 2 or 4.

    Returns:
        The packed residuals, uint8.

    Shapes:
        residuals (n, d); bucket_cutoffs (2**nbits - 1,); returns (n, d * nbits // 8).
    """
    _tensor("residuals", residuals, 2, FLOATS)
    _tensor("bucket_cutoffs", bucket_cutoffs, 1, (torch.float32,))
    nbits = _nbits(nbits, residuals.size(1))
    if bucket_cutoffs.numel() != (1 << nbits) - 1:
        raise ValueError(f"nbits {nbits} needs {(1 << nbits) - 1} bucket_cutoffs, got {bucket_cutoffs.numel()}")
    _same_device(residuals=residuals, bucket_cutoffs=bucket_cutoffs)
    if native.has("compress_residuals", residuals.device):
        return torch.ops.colbert.compress_residuals(residuals, bucket_cutoffs, nbits)
    return reference.compress_residuals(residuals, bucket_cutoffs, nbits)


def decompress_residuals(
    codes: Tensor,
    packed: Tensor,
    centroids: Tensor,
    bucket_weights: Tensor,
    nbits: int,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Rebuild embeddings from centroid codes and packed residuals.

    Vector = `centroids[code].float() + bucket_weights[bucket id]` per dimension, then L2-normalised if `normalize`
    (as `torch.nn.functional.normalize`). With normalize=False this equals the reference's CPU decompression bit for
    bit. A code outside [0, C) raises IndexError.

    Args:
        codes: centroid id of each embedding, int32/int64.
        packed: packed residuals (`compress_residuals`), uint8.
        centroids: float16/bfloat16/float32.
        bucket_weights: the index's bucket weights (`buckets.pt`), float32.
        nbits: bits per dimension: 1, 2 or 4.
        normalize: L2-normalise each vector.
        dtype: floating dtype of the result (computed in float32).

    Returns:
        The embeddings.

    Shapes:
        codes (n,); packed (n, d * nbits // 8); centroids (C, d); bucket_weights (2**nbits,); returns (n, d).
    """
    nbits = _codec(codes, packed, centroids, bucket_weights, nbits)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if native.has("decompress_residuals", codes.device) and not _needs_grad(centroids, bucket_weights):
        return torch.ops.colbert.decompress_residuals(codes, packed, centroids, bucket_weights, nbits,
                                                      bool(normalize), dtype)
    return reference.decompress_residuals(codes, packed, centroids, bucket_weights, nbits, bool(normalize), dtype)


def segmented_maxsim(scores: Tensor, lengths: Tensor) -> Tensor:
    """For each document, the sum over query tokens of the best score among the document's tokens.

    Plain max (no clamping at 0); a document of length 0 scores 0.

    Args:
        scores: query-token scores of every document token, documents packed in order, float.
        lengths: tokens per document, int64 (int32 accepted).

    Returns:
        One float32 score per document.

    Shapes:
        scores (sum(lengths), Lq); lengths (ndocs,); returns (ndocs,).
    """
    _tensor("scores", scores, 2, FLOATS)
    lengths = _int64("lengths", lengths)
    _same_device(scores=scores, lengths=lengths)
    _lengths(lengths, len(scores), "scores")
    if native.has("segmented_maxsim", scores.device) and not _needs_grad(scores):
        return torch.ops.colbert.segmented_maxsim(scores, lengths)
    return reference.segmented_maxsim(scores, lengths)


def centroid_maxsim(
    centroid_scores: Tensor, codes: Tensor, doc_offsets: Tensor, pids: Tensor, keep: Tensor | None = None
) -> Tensor:
    """PLAID stages 2-3: approximate each candidate's score from its centroid codes alone.

    Score = Σ_q max over the document's codes c with keep[c] of centroid_scores[c, q]; each column's max starts at
    -9999, so a query column with no kept code contributes -9999 (the reference's filter_pids.cpp). A pid outside
    [0, P) raises IndexError.

    Args:
        centroid_scores: every centroid against every query token, float (used as float32).
        codes: all documents' centroid codes, in pid order, int32/int64.
        doc_offsets: document p is codes[doc_offsets[p]:doc_offsets[p + 1]], int64.
        pids: the candidates to score, int64.
        keep: which centroids count (stage 2's threshold), bool; None keeps all (stage 3).

    Returns:
        One float32 score per candidate.

    Shapes:
        centroid_scores (C, Lq); codes (N,); doc_offsets (P + 1,); pids (n,); keep (C,); returns (n,).
    """
    centroid_scores = _tensor("centroid_scores", centroid_scores, 2, FLOATS).float()
    _tensor("codes", codes, 1, INDEXES)
    doc_offsets, pids = _int64("doc_offsets", doc_offsets), _int64("pids", pids)
    if keep is not None and (_tensor("keep", keep, 1, (torch.bool,)).numel() != len(centroid_scores)):
        raise ValueError(f"keep has {keep.numel():,} values but there are {len(centroid_scores):,} centroids")
    if doc_offsets.numel() == 0:
        raise ValueError("doc_offsets must hold P + 1 offsets, got none")
    extra = {} if keep is None else {"keep": keep}
    _same_device(centroid_scores=centroid_scores, codes=codes, doc_offsets=doc_offsets, pids=pids, **extra)
    if native.has("centroid_maxsim", centroid_scores.device) and not _needs_grad(centroid_scores):
        return torch.ops.colbert.centroid_maxsim(centroid_scores, codes, doc_offsets, pids, keep)
    return reference.centroid_maxsim(centroid_scores, codes, doc_offsets, pids, keep)


def gather_segments(values: Tensor, doc_offsets: Tensor, pids: Tensor) -> tuple[Tensor, Tensor]:
    """The rows of documents `pids`, concatenated in that order, and their lengths (the reference's
    segmented_lookup). `values` may be a memory-mapped tensor: only the selected rows are read.

    Args:
        values: per-row data of all documents, any dtype, documents in pid order.
        doc_offsets: document p is values[doc_offsets[p]:doc_offsets[p + 1]], int64.
        pids: the documents to gather, int64.

    Returns:
        (the gathered rows, rows per pid as int64).

    Shapes:
        values (N, ...); doc_offsets (P + 1,); pids (n,); returns ((sum(lengths), ...), (n,)).
    """
    _tensor("values", values, -1)
    doc_offsets, pids = _int64("doc_offsets", doc_offsets), _int64("pids", pids)
    if doc_offsets.numel() == 0:
        raise ValueError("doc_offsets must hold P + 1 offsets, got none")
    _same_device(values=values, doc_offsets=doc_offsets, pids=pids)
    if values.is_contiguous() and native.has("gather_segments", values.device):
        return torch.ops.colbert.gather_segments(values, doc_offsets, pids)
    return reference.gather_segments(values, doc_offsets, pids)


def _maxsim_inputs(Q: Tensor, codes: Tensor, packed: Tensor, lengths: Tensor, centroids: Tensor,
                   bucket_weights: Tensor, nbits: int) -> tuple[int, Tensor, Tensor]:
    """Checks shared by decompress_maxsim and decompress_maxsim_rows; returns nbits, Q as float32, lengths as int64."""
    nbits = _codec(codes, packed, centroids, bucket_weights, nbits)
    Q = _tensor("Q", Q, 2, FLOATS).float()
    lengths = _int64("lengths", lengths)
    if Q.size(1) != centroids.size(1):
        raise ValueError(f"Q has dim {Q.size(1)} but the centroids have dim {centroids.size(1)}")
    _same_device(Q=Q, codes=codes, lengths=lengths)
    _lengths(lengths, len(codes), "codes")
    return nbits, Q, lengths


def decompress_maxsim(
    Q: Tensor,
    codes: Tensor,
    packed: Tensor,
    lengths: Tensor,
    centroids: Tensor,
    bucket_weights: Tensor,
    nbits: int,
) -> Tensor:
    """PLAID stage 4, fused: MaxSim of Q against each document's decompressed, L2-normalised embeddings.

    Same result (to float rounding) as `decompress_residuals` -> `@ Q.T` -> `segmented_maxsim`, without holding
    every decompressed vector at once on the native path. Plain max (no clamping at 0); an empty document scores 0.

    Args:
        Q: the normalised query embeddings, float (used as float32).
        codes: centroid id of each document token, int32/int64, documents laid end to end.
        packed: their packed residuals, uint8.
        lengths: tokens per document, int64.
        centroids: float16/bfloat16/float32.
        bucket_weights: float32.
        nbits: bits per dimension: 1, 2 or 4.

    Returns:
        One float32 score per document.

    Shapes:
        Q (Lq, d); codes (M,); packed (M, d * nbits // 8); lengths (n,); centroids (C, d);
        bucket_weights (2**nbits,); returns (n,).
    """
    nbits, Q, lengths = _maxsim_inputs(Q, codes, packed, lengths, centroids, bucket_weights, nbits)
    if native.has("decompress_maxsim", codes.device) and not _needs_grad(Q, centroids, bucket_weights):
        return torch.ops.colbert.decompress_maxsim(Q, codes, packed, lengths, centroids, bucket_weights, nbits)
    return reference.decompress_maxsim(Q, codes, packed, lengths, centroids, bucket_weights, nbits)


def decompress_maxsim_rows(
    Q: Tensor,
    codes: Tensor,
    packed: Tensor,
    lengths: Tensor,
    centroids: Tensor,
    bucket_weights: Tensor,
    nbits: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`decompress_maxsim`, plus where each score term comes from: for each document and query vector, the row of
    the document's best-matching embedding (the first of equal maxima), as a position in `codes`, that
    embedding, decompressed and normalised as `decompress_residuals` gives it, and the first query vector of the
    document that matched the same row (the query vector itself when no earlier one did).

    The scores equal `decompress_maxsim`'s (bit for bit on the native path, which runs the same loop and copies the
    vectors from the rows it has just decoded). Diverse search (colbert.search.diversity) takes the matched vectors
    as each candidate's evidence, so it needs no second pass over the candidates.

    Args:
        as `decompress_maxsim`.

    Returns:
        (one float32 score per document, the matched rows as int64, their vectors as float32, the first query
        vector of each match as int64); -1, zeros and 0 for an empty document.

    Shapes:
        Q (Lq, d); codes (M,); packed (M, d * nbits // 8); lengths (n,); centroids (C, d);
        bucket_weights (2**nbits,); returns ((n,), (n, Lq), (n, Lq, d), (n, Lq)).
    """
    nbits, Q, lengths = _maxsim_inputs(Q, codes, packed, lengths, centroids, bucket_weights, nbits)
    if native.has("decompress_maxsim_rows", codes.device) and not _needs_grad(Q, centroids, bucket_weights):
        return torch.ops.colbert.decompress_maxsim_rows(Q, codes, packed, lengths, centroids, bucket_weights, nbits)
    return reference.decompress_maxsim_rows(Q, codes, packed, lengths, centroids, bucket_weights, nbits)


def mmr(relevance: Tensor, vectors: Tensor, index: Tensor, k: int, diversity: float) -> Tensor:
    """Greedy maximal marginal relevance over documents described by their evidence: the positions of the
    min(k, n) documents picked, in order (colbert.search.diversity).

    Each step picks the first document of the highest gain: its relevance at the first step, then
    `(1 - diversity) * relevance - diversity * max(-1, max over the picks s of similarity(d, s))`. The similarity of
    two documents is their symmetrised mean MaxSim over their evidence (document i's query vectors matched
    `vectors[index[i]]`): the mean over d's query vectors of the best match among s's, and the same from s's side,
    averaged. The native kernel compares lazily (a document only while its gain could still be the highest; gains
only fall), the twin eagerly; they sum in different orders, so near-equal gains may pick differently.

    Args:
        relevance: one float32 per document (a mean cosine).
        vectors: the distinct evidence vectors, float32.
        index: which of them each query vector of each document matched, int64.
        k: documents to pick (>= 0).
        diversity: from 0 (by relevance) to 1 (by difference from the picks).

    Returns:
        The picked positions, int64.

    Shapes:
        relevance (n,); vectors (u, d); index (n, Lq); returns (min(k, n),).
    """
    _tensor("relevance", relevance, 1, (torch.float32,))
    _tensor("vectors", vectors, 2, (torch.float32,))
    _tensor("index", index, 2, (torch.int64,))
    if index.size(0) != relevance.size(0):
        raise ValueError(f"index has {index.size(0):,} rows but there are {relevance.size(0):,} relevances")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    if not 0 <= diversity <= 1:
        raise ValueError(f"diversity must be in [0, 1], got {diversity!r}")
    _same_device(relevance=relevance, vectors=vectors, index=index)
    if native.has("mmr", relevance.device):  # checks the rows itself, raising IndexError
        return torch.ops.colbert.mmr(relevance, vectors, index, k, float(diversity))
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(vectors)):
        raise IndexError(f"index holds rows in [{int(index.min())}, {int(index.max())}] but there are "
                         f"{len(vectors):,} vectors")
    return reference.mmr(relevance, vectors, index, k, float(diversity))


def refine_codes(scores: Tensor, slack: Tensor, embeddings: Tensor, centroids: Tensor,
                 bias: Tensor | None = None, row_scale: Tensor | None = None) -> Tensor:
    """The nearest centroid of each embedding, re-scored exactly among the few a low-precision matmul ranks near the
    top: with a[i, c] = float32(scores[i, c]) * row_scale[i] + bias[c] (each term optional; two float32 roundings,
    never fused), the candidates
    of row i are the centroids c with `a[i, c] >= max(a[i]) - slack[i]`; the one with the largest float32
    `embeddings[i] . centroids[c] + bias[c]` wins (the lowest index on ties). k-means passes bias = -|c|^2 / 2,
    which turns the largest score into the smallest Euclidean distance; an int8 matmul passes its int32 scores and
    the product of the two quantisation scales.

    When `slack[i]` is at least twice the largest error of row i's approximate scores, the result is the exact
    nearest centroid (`colbert.indexing.kmeans.nearest_centroids` derives such bounds for bfloat16 and int8
    matmuls). Scores must be finite.

    Args:
        scores: approximate scores of every centroid, bfloat16/float32/int32.
        slack: how far below its best approximate score a candidate may be, float32, >= 0.
        embeddings, centroids: float32.
        bias: a float32 term per centroid, or None.
        row_scale: a float32 factor per row, or None.

    Returns:
        The centroid id of each embedding, int32.

    Shapes:
        scores (n, C); slack (n,); embeddings (n, d); centroids (C, d); bias (C,); row_scale (n,); returns (n,).
    """
    _tensor("scores", scores, 2, (torch.bfloat16, torch.float32, torch.int32))
    n, C = scores.shape
    for name, value, size, what in (("bias", bias, C, "centroids"), ("row_scale", row_scale, n, "rows of scores")):
        if value is not None:
            _tensor(name, value, 1, (torch.float32,))
            if value.size(0) != size:
                raise ValueError(f"{name} has {value.size(0):,} values but there are {size:,} {what}")
            _same_device(scores=scores, **{name: value})
    _tensor("slack", slack, 1, (torch.float32,))
    _tensor("embeddings", embeddings, 2, (torch.float32,))
    _tensor("centroids", centroids, 2, (torch.float32,))
    if embeddings.size(0) != n or slack.size(0) != n:
        raise ValueError(f"scores has {n:,} rows but embeddings has {embeddings.size(0):,} and slack "
                         f"{slack.size(0):,}")
    if centroids.size(0) != C or centroids.size(1) != embeddings.size(1):
        raise ValueError(f"centroids must have shape ({C}, {embeddings.size(1)}) to match scores and embeddings, "
                         f"got {tuple(centroids.shape)}")
    if C == 0 and n:
        raise ValueError("there must be at least one centroid")
    _same_device(scores=scores, slack=slack, embeddings=embeddings, centroids=centroids)
    if native.has("refine_codes", scores.device):
        return torch.ops.colbert.refine_codes(scores, slack, embeddings, centroids, bias, row_scale)
    return reference.refine_codes(scores, slack, embeddings, centroids, bias, row_scale)


def backend_info() -> dict[str, Any]:
    """Where the kernels come from and, for each op, `native` or the reason not, per device type.

    Loads the kernels if that has not happened yet (see `colbert.kernels.native`); queries no GPU.

    Returns:
        {"mode", "source", "torch", "cuda", "cpu_threads", "ops": {op: {"cpu": ..., "cuda": ...}}}, where
        `cpu_threads` is how many threads the native CPU kernels ran a parallel loop on just now
        (`torch.get_num_threads()`, unless the inter-op pool has fewer threads), None without native kernels.
    """
    backend = native.load()
    ops = {op: {dev: backend.reasons[(op, dev)] for dev in native.DEVICE_KEYS} for op in native.OPS}
    return {"mode": backend.mode, "source": backend.source, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cpu_threads": native_cpu_threads(), "ops": ops}


def _native_cpu() -> bool:
    """Whether the native CPU kernels are loaded (and with them the thread probe and cap ops)."""
    return native.has("decompress_maxsim", torch.device("cpu"))


def native_cpu_threads() -> "int | None":
    """Threads the native CPU kernels' parallel loops run on now, from this thread (see `thread_cap`), or None
    without native CPU kernels. (A native library always has the probe: builds are keyed by the sources' hash, and
    a prebuilt one ships with them.)"""
    if not _native_cpu():
        return None
    return int(torch.ops.colbert.parallel_threads(8 * torch.get_num_threads()))


@contextlib.contextmanager
def thread_cap(threads: Optional[int]) -> Iterator[None]:
    """Run the native CPU kernels that this thread calls inside the block on at most `threads` threads.

    By default a kernel call uses `torch.get_num_threads()` threads, which makes one search faster on an idle
    machine; where other work already keeps the cores busy (a server answering several requests at once), one
    thread per call gives more throughput. Other threads and torch's own ops are not affected. Nests; without native
    kernels it does nothing. (Kernels built with OpenMP, `COLBERT_KERNELS_OPENMP=1`, honour a cap of 1 only.)

        with kernels.thread_cap(1):
            searcher.search(query)

    Args:
        threads: the cap, at least 1; None for no cap.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"thread_cap takes a whole number of threads >= 1, or None for no cap; got {threads!r}")
    if not _native_cpu():
        yield
        return
    before = torch.ops.colbert.set_kernel_threads(threads or 0)
    try:
        yield
    finally:
        torch.ops.colbert.set_kernel_threads(before)
