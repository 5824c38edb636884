"""The pure-PyTorch twin of every kernel: the runtime fallback and the oracle the native kernels are tested against.

Plain, vectorised PyTorch on any device. Inputs are assumed valid: `colbert.kernels` checks them before calling here.
Dims: `n` embeddings (or candidate documents), `d` embedding dim, `C` centroids, `Lq` query tokens, `M` rows of the
selected documents laid end to end. Bit layout of packed residuals: see `compress_residuals` and csrc/README.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK = 1 << 16  # embeddings (de)compressed at once: 2**16 x 128 dims x 4 B = 32 MiB per temporary
NO_KEPT_CODE = -9999.0  # centroid_maxsim: a query column with no kept code (the reference's filter_pids.cpp)


def _reversed_ids(nbits: int, device: torch.device) -> Tensor:
    """(2**nbits,) int32: each bucket id with its nbits bits in reverse order."""
    ids = torch.arange(1 << nbits, dtype=torch.int32, device=device)  # (2**nbits,)
    bits = (ids[:, None] >> torch.arange(nbits, device=device)) & 1  # (2**nbits, nbits), LSB first
    return (bits << torch.arange(nbits - 1, -1, -1, device=device)).sum(dim=1, dtype=torch.int32)


def _slot_shifts(nbits: int, device: torch.device) -> Tensor:
    """(8/nbits,) int32: where each dimension's field sits in its byte; the first dimension takes the top bits."""
    return nbits * torch.arange(8 // nbits - 1, -1, -1, dtype=torch.int32, device=device)


def _byte_table(bucket_weights: Tensor, nbits: int) -> Tensor:
    """(256, 8/nbits) float32: the bucket weight of every slot of every possible packed byte."""
    device = bucket_weights.device
    byte = torch.arange(256, dtype=torch.int32, device=device)  # (256,)
    fields = (byte[:, None] >> _slot_shifts(nbits, device)) & ((1 << nbits) - 1)  # (256, 8/nbits)
    return bucket_weights.float()[_reversed_ids(nbits, device)[fields].long()]  # (256, 8/nbits)


def compress_residuals(residuals: Tensor, bucket_cutoffs: Tensor, nbits: int) -> Tensor:
    """Bucket each residual dimension and pack the bucket ids, `nbits` per dimension, into bytes.

    Bucket id = `torch.bucketize(residual.float(), bucket_cutoffs)`. Each id is written least-significant bit first
    and the row's bit string is packed MSB first (`numpy.packbits`), as the reference's `binarize` does.

    Shapes: residuals (n, d); bucket_cutoffs (2**nbits - 1,); returns uint8 (n, d * nbits // 8).

    >>> compress_residuals(torch.tensor([[-1.0, 0.2, 0.6, 2.0]]), torch.tensor([0.0, 0.5, 1.0]), nbits=2)
    tensor([[39]], dtype=torch.uint8)
    """
    n, d = residuals.shape
    device = residuals.device
    reversed_ids, shifts = _reversed_ids(nbits, device), _slot_shifts(nbits, device)
    cutoffs = bucket_cutoffs.float()
    out = torch.empty(n, d * nbits // 8, dtype=torch.uint8, device=device)
    for start in range(0, n, CHUNK):
        chunk = residuals[start : start + CHUNK]
        ids = torch.bucketize(chunk.float().contiguous(), cutoffs, out_int32=True)  # (c, d)
        fields = reversed_ids[ids.long()].view(len(chunk), -1, 8 // nbits) << shifts  # (c, d*nbits/8, 8/nbits)
        out[start : start + CHUNK] = fields.sum(dim=-1).to(torch.uint8)  # (c, d*nbits/8)
    return out


def decompress_residuals(
    codes: Tensor,
    packed: Tensor,
    centroids: Tensor,
    bucket_weights: Tensor,
    nbits: int,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Rebuild embeddings: `centroids[code].float() + bucket_weights[bucket id]` per dimension, L2-normalised if
    `normalize`.

    Shapes: codes (n,); packed uint8 (n, d * nbits // 8); centroids (C, d); bucket_weights (2**nbits,);
    returns (n, d) in `dtype`.

    >>> packed = compress_residuals(torch.tensor([[-1.0, 0.2, 0.6, 2.0]]), torch.tensor([0.0, 0.5, 1.0]), nbits=2)
    >>> decompress_residuals(torch.tensor([0]), packed, torch.zeros(1, 4), torch.tensor([-2.0, 0.25, 0.75, 3.0]),
    ...                      nbits=2, normalize=False)
    tensor([[-2.0000,  0.2500,  0.7500,  3.0000]])
    """
    n, d = codes.numel(), centroids.size(1)
    table = _byte_table(bucket_weights, nbits)  # (256, 8/nbits)
    out = torch.empty(n, d, dtype=dtype, device=centroids.device)
    for start in range(0, n, CHUNK):
        rows = slice(start, start + CHUNK)
        vectors = centroids[codes[rows].long()].float()  # (c, d)
        vectors += table[packed[rows].long()].view(len(vectors), d)  # (c, d*nbits/8, 8/nbits) -> (c, d)
        out[rows] = F.normalize(vectors, dim=-1) if normalize else vectors
    return out


def segmented_maxsim(scores: Tensor, lengths: Tensor) -> Tensor:
    """For each document, the sum over query tokens of the best score among the document's tokens (0 if empty).

    Shapes: scores (sum(lengths), Lq), documents packed in order; lengths (ndocs,); returns float32 (ndocs,).

    >>> segmented_maxsim(torch.tensor([[1., 0.], [0., 2.], [3., 3.]]), torch.tensor([2, 1]))
    tensor([3., 6.])
    """
    ndocs, maxlen = lengths.numel(), int(lengths.max()) if lengths.numel() else 0
    rows = torch.arange(max(maxlen, 1), device=scores.device) < lengths[:, None]  # (ndocs, maxlen)
    padded = scores.new_full((ndocs, max(maxlen, 1), scores.size(1)), float("-inf"))  # (ndocs, maxlen, Lq)
    padded[rows] = scores
    best = padded.amax(dim=1).float()  # (ndocs, Lq)
    return best.sum(dim=1).where(lengths > 0, 0.0)  # (ndocs,)


def gather_segments(values: Tensor, doc_offsets: Tensor, pids: Tensor) -> tuple[Tensor, Tensor]:
    """The rows of documents `pids`, in that order, and their lengths (the reference's `segmented_lookup`).

    Shapes: values (N, ...); doc_offsets (P + 1,), document p = values[doc_offsets[p]:doc_offsets[p + 1]];
    pids (n,); returns ((sum(lengths), ...), lengths (n,) int64).

    >>> gather_segments(torch.tensor([10, 11, 12, 13, 14]), torch.tensor([0, 2, 2, 5]), torch.tensor([2, 0]))
    (tensor([12, 13, 14, 10, 11]), tensor([3, 2]))
    """
    starts, lengths = doc_offsets[pids], doc_offsets[pids + 1] - doc_offsets[pids]  # (n,), (n,)
    total = int(lengths.sum())
    first_out = lengths.cumsum(dim=0) - lengths  # (n,) output row of each document's first row
    shift = torch.repeat_interleave(starts - first_out, lengths, output_size=total)  # (M,)
    rows = shift + torch.arange(total, device=shift.device)  # (M,) source row of each output row
    return values[rows.to(values.device)], lengths


def centroid_maxsim(
    centroid_scores: Tensor, codes: Tensor, doc_offsets: Tensor, pids: Tensor, keep: Tensor | None = None
) -> Tensor:
    """PLAID stages 2-3: score each candidate by its codes alone, Σ_q max over kept codes c of centroid_scores[c, q].

    A query column whose document has no kept code contributes -9999, as in the reference's filter_pids.cpp (every
    column's max starts there).

    Shapes: centroid_scores (C, Lq); codes (N,); doc_offsets (P + 1,); pids (n,); keep (C,) bool or None (all kept);
    returns float32 (n,).

    >>> scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    >>> codes, offsets = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 2, 4])
    >>> centroid_maxsim(scores, codes, offsets, torch.tensor([1, 0]))
    tensor([1.0000, 1.7000])
    >>> centroid_maxsim(scores, codes, offsets, torch.tensor([0, 1]), keep=torch.tensor([False, False, True])).tolist()
    [-19998.0, 1.0]
    """
    doc_codes, lengths = gather_segments(codes, doc_offsets, pids)  # (M,), (n,)
    doc_codes = doc_codes.long()
    scores = centroid_scores.float()[doc_codes]  # (M, Lq)
    if keep is not None:
        scores = scores.masked_fill(~keep[doc_codes, None], float("-inf"))  # (M, Lq)
    owner = torch.repeat_interleave(torch.arange(len(pids), device=scores.device), lengths.to(scores.device))  # (M,)
    best = scores.new_full((len(pids), centroid_scores.size(1)), NO_KEPT_CODE)  # (n, Lq)
    best.scatter_reduce_(0, owner[:, None].expand_as(scores), scores, "amax")  # (n, Lq), starting at -9999
    return best.sum(dim=1)  # (n,)


def decompress_maxsim(
    Q: Tensor,
    codes: Tensor,
    packed: Tensor,
    lengths: Tensor,
    centroids: Tensor,
    bucket_weights: Tensor,
    nbits: int,
) -> Tensor:
    """PLAID stage 4: MaxSim of Q against each document's decompressed, normalised embeddings (0 for an empty one).

    Shapes: Q (Lq, d); codes (M,); packed (M, d * nbits // 8); lengths (n,), documents laid end to end;
    centroids (C, d); bucket_weights (2**nbits,); returns float32 (n,).

    >>> tokens = torch.tensor([[1.0, -1, -1, -1, -1, -1, -1, -1], [-1.0, 1, -1, -1, -1, -1, -1, -1]])  # d = 8
    >>> packed = compress_residuals(tokens, torch.tensor([0.0]), nbits=1)  # one byte per token
    >>> Q = torch.eye(8)[:2]  # two query tokens
    >>> decompress_maxsim(Q, torch.tensor([0, 0]), packed, torch.tensor([2, 0]), torch.zeros(1, 8),
    ...                   torch.tensor([-1.0, 1.0]), nbits=1)
    tensor([0.7071, 0.0000])
    """
    D = decompress_residuals(codes, packed, centroids, bucket_weights, nbits)  # (M, d), normalised
    return segmented_maxsim(D @ Q.float().T, lengths)  # (M, Lq) -> (n,)


def decompress_maxsim_rows(
    Q: Tensor,
    codes: Tensor,
    packed: Tensor,
    lengths: Tensor,
    centroids: Tensor,
    bucket_weights: Tensor,
    nbits: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`decompress_maxsim`, and per document and query vector the row in `codes` of the best match (the first of
    equal maxima), that row's decompressed, normalised vector and the first of the document's query vectors that
    matched the same row (-1, zeros and 0 for an empty document).

    Shapes: as decompress_maxsim; returns (float32 (n,), int64 (n, Lq), float32 (n, Lq, d), int64 (n, Lq)).

    >>> tokens = torch.tensor([[1.0, -1, -1, -1, -1, -1, -1, -1], [-1.0, 1, -1, -1, -1, -1, -1, -1]])  # d = 8
    >>> packed = compress_residuals(tokens, torch.tensor([0.0]), nbits=1)
    >>> scores, rows, vectors, first = decompress_maxsim_rows(torch.eye(8)[:2], torch.tensor([0, 0]), packed,
    ...                                                       torch.tensor([0, 2]), torch.zeros(1, 8),
    ...                                                       torch.tensor([-1.0, 1.0]), nbits=1)
    >>> scores, rows, vectors.shape, first
    (tensor([0.0000, 0.7071]), tensor([[-1, -1],
            [ 0,  1]]), torch.Size([2, 2, 8]), tensor([[0, 0],
            [0, 1]]))
    """
    n, Lq = lengths.numel(), Q.size(0)
    D = decompress_residuals(codes, packed, centroids, bucket_weights, nbits)  # (M, d), normalised
    longest = max(int(lengths.max()) if n else 0, 1)
    starts = lengths.cumsum(dim=0) - lengths  # (n,) row of each document's first embedding
    valid = torch.arange(longest, device=lengths.device) < lengths[:, None]  # (n, longest)
    padded = D.new_full((n, longest, Lq), float("-inf"))  # (n, longest, Lq)
    padded[valid] = D @ Q.float().T  # (M, Lq) into the documents' slots
    best, where = padded.max(dim=1)  # (n, Lq): torch.max returns the first of equal maxima
    empty = lengths == 0  # (n,)
    rows = (starts[:, None] + where).masked_fill(empty[:, None], -1)  # (n, Lq)
    vectors = D[rows.clamp(min=0)] if len(D) else D.new_zeros(n, Lq, D.size(1))  # (n, Lq, d)
    first = (rows[:, :, None] == rows[:, None, :]).to(torch.uint8).argmax(dim=2)  # (n, Lq) argmax: the first
    return best.sum(dim=1).masked_fill(empty, 0.0), rows, vectors.masked_fill(empty[:, None, None], 0.0), first


def mmr(relevance: Tensor, vectors: Tensor, index: Tensor, k: int, diversity: float) -> Tensor:
    """Greedy maximal marginal relevance: the positions of the min(k, n) documents picked, in order.

    Each step picks the first document of the highest gain, `relevance` at the first step, then
    `(1 - diversity) * relevance - diversity * max(-1, max over picks s of similarity(d, s))`, where the similarity
    of two documents is their symmetrised mean MaxSim over their evidence: document i's query vectors matched
    `vectors[index[i]]`. One matmul per pick, over the distinct vectors.

    Shapes: relevance (n,); vectors (u, d) float32; index (n, Lq) int64; returns int64 (min(k, n),).

    >>> vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # documents 0 and 1 matched the same vector, 2 another
    >>> mmr(torch.tensor([0.9, 0.9, 0.5]), vectors, torch.tensor([[0], [0], [1]]), 2, 0.5)
    tensor([0, 2])
    """
    n, Lq = index.shape
    slots, weight = _distinct_rows(index, Lq)  # (n, U), (n, U)
    vectors_t = vectors.T.contiguous()  # (d, u): the matmul of each pick runs faster on it
    picked: list[int] = []
    closest = relevance.new_full((n,), float("-inf"))  # (n,) max similarity to the picked documents
    available = torch.ones(n, dtype=torch.bool, device=relevance.device)
    for _ in range(min(k, n)):
        gain = (1 - diversity) * relevance - diversity * closest.clamp(min=-1) if picked else relevance.clone()
        gain[~available] = float("-inf")
        s = int(gain.argmax())
        picked.append(s)
        available[s] = False
        if len(picked) < min(k, n):
            mine = weight[s] > 0  # (U,) s's distinct vectors, without padding
            G = vectors[slots[s, mine]] @ vectors_t  # (u_s, u)
            theirs = (G.amax(dim=0)[slots] * weight).sum(dim=1)  # (n,) their vectors' best match among s's
            similarity = 0.5 * (theirs + weight[s, mine] @ G[:, slots].amax(dim=2))  # (u_s,) @ (u_s, n) -> (n,)
            closest = torch.maximum(closest, similarity)
    return torch.tensor(picked, dtype=torch.long, device=relevance.device)


def _distinct_rows(index: Tensor, Lq: int) -> tuple[Tensor, Tensor]:
    """Each document's distinct rows, padded by repeating its first one, and their shares of its Lq query vectors
    (0 for padding). Shapes: index (n, Lq) -> ((n, U), (n, U))."""
    n = index.size(0)
    ordered, _ = index.sort(dim=1)  # (n, Lq)
    first = torch.ones_like(ordered, dtype=torch.bool)  # (n, Lq) the first occurrence of each row
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    slot = first.cumsum(dim=1) - 1  # (n, Lq) slot of each sorted entry
    U = int(slot[:, -1].max()) + 1 if n and Lq else 0
    slots = ordered[:, :1].expand(n, U).scatter(1, slot, ordered)  # (n, U)
    weight = torch.zeros(n, U, device=index.device).scatter_add_(1, slot, torch.full((n, Lq), 1 / Lq,
                                                                                      device=index.device))
    return slots, weight


def refine_codes(scores: Tensor, slack: Tensor, embeddings: Tensor, centroids: Tensor,
                 bias: Tensor | None = None, row_scale: Tensor | None = None) -> Tensor:
    """The nearest centroid of each embedding among those whose approximate score (float32 scores * row_scale +
    bias, each term optional) is within `slack` of the row's best: the largest float32 dot product (plus `bias`)
    among those candidates, the lowest index on ties.

    Shapes: scores (n, C); slack (n,); embeddings (n, d); centroids (C, d); bias (C,); row_scale (n,);
    returns int32 (n,).

    >>> scores = torch.tensor([[0.50, 0.49, 0.10]])  # low-precision scores rank centroid 0 first
    >>> refine_codes(scores, torch.tensor([0.02]), torch.tensor([[0.0, 1.0]]),
    ...              torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))  # the exact scores favour centroid 1
    tensor([1], dtype=torch.int32)
    """
    approx = scores.float()  # (n, C)
    if row_scale is not None:
        approx = approx * row_scale[:, None]
    if bias is not None:
        approx = approx + bias
    candidate = approx >= approx.max(dim=1, keepdim=True).values - slack.float()[:, None]  # (n, C)
    exact = embeddings.float() @ centroids.float().T if bias is None else torch.addmm(bias, embeddings.float(),
                                                                                      centroids.float().T)  # (n, C)
    return exact.masked_fill(~candidate, float("-inf")).argmax(dim=1).to(torch.int32)  # (n,)
