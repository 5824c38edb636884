"""Codes -> inverted lists: for each centroid, the passages that have at least one embedding assigned to it.

The layout is the reference's `ivf.pid.pt`: the lists concatenated in centroid order, each sorted, plus their
lengths. The reference then pads the concatenation with `max(lengths)` zeros when the last list is shorter than the
longest one, so that a window of `max(lengths)` pids starting at any list's offset stays inside the tensor (its
StridedTensor reads such windows); `build_ivf` does the same, so rebuilding an index's IVF reproduces it exactly.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

IVF_CHUNK = 1 << 20  # embeddings keyed and deduplicated at once: 2**20 x int64 keys = 8 MiB (a few such temporaries)


def build_ivf(codes: Tensor, doclens: Tensor, num_partitions: int) -> tuple[Tensor, Tensor]:
    """Inverted lists from the centroid code of every embedding.

    Each (centroid, pid) pair is encoded as one int64 key `code * P + pid`; keys are deduplicated (sorted) a
    block of `IVF_CHUNK` embeddings at a time, then once more over the blocks' survivors, so memory follows the
    number of distinct pairs rather than the number of embeddings. No Python loop over embeddings or centroids.

    Args:
        codes: the centroid id of each embedding, passages in pid order (may be memory-mapped).
        doclens: embeddings per passage; sums to len(codes).
        num_partitions: number of centroids C; every code must be in [0, C).

    Returns:
        (ivf, ivf_lengths): the pids of centroid c are `ivf[offsets[c]:offsets[c + 1]]`, sorted, where offsets
        are the cumulative lengths; ivf may end in padding zeros (see the module docstring).

    Shapes: codes (N,) integer; doclens (P,) integer; returns ivf (>= sum(ivf_lengths),) int32 and
    ivf_lengths (C,) int64.

    Example:
        >>> ivf, lengths = build_ivf(torch.tensor([2, 0, 2, 2, 1]), torch.tensor([3, 2]), num_partitions=3)
        >>> ivf.tolist(), lengths.tolist()
        ([0, 1, 0, 1], [1, 1, 2])
    """
    doclens = torch.as_tensor(doclens, dtype=torch.int64)
    if codes.dim() != 1 or codes.is_floating_point() or doclens.dim() != 1:
        raise ValueError(f"codes and doclens must be 1-D integer tensors, got {tuple(codes.shape)} {codes.dtype} "
                         f"and {tuple(doclens.shape)}")
    if int(doclens.sum()) != codes.numel():
        raise ValueError(f"doclens sum to {int(doclens.sum()):,} but there are {codes.numel():,} codes")
    num_passages = doclens.numel()
    doc_starts = torch.cumsum(doclens, 0) - doclens  # (P,) first embedding of each passage
    keys = []
    for start in progress(range(0, codes.numel(), IVF_CHUNK), desc="Building the IVF", unit="block"):
        block = codes[start : start + IVF_CHUNK].to(torch.int64)  # (n,)
        if block.numel() and (int(block.min()) < 0 or int(block.max()) >= num_partitions):
            raise ValueError(f"codes must lie in [0, {num_partitions}); embeddings {start:,}.. have "
                             f"[{int(block.min())}, {int(block.max())}]")
        positions = torch.arange(start, start + block.numel())  # (n,) embedding ids
        pids = torch.searchsorted(doc_starts, positions, right=True) - 1  # (n,) passage of each embedding
        keys.append(torch.unique(block * num_passages + pids))  # (m <= n,) sorted distinct (code, pid) keys
    keys = torch.unique(torch.cat(keys)) if keys else torch.empty(0, dtype=torch.int64)  # sorted by code, then pid
    ivf = (keys % max(num_passages, 1)).to(torch.int32)
    lengths = torch.bincount(keys // max(num_passages, 1), minlength=num_partitions)
    return _pad_like_reference(ivf, lengths), lengths


def _pad_like_reference(ivf: Tensor, lengths: Tensor) -> Tensor:
    """Append max(lengths) zeros when a max-length window from the last list's start would run past the end."""
    if lengths.numel() == 0:
        return ivf
    longest = int(lengths.max())
    if longest > int(lengths[-1]):  # i.e. offsets[-2] + longest > len(ivf)
        ivf = torch.cat([ivf, ivf.new_zeros(longest)])
    return ivf


def ivf_offsets(lengths: Tensor) -> Tensor:
    """Where each list starts, plus the end. Shapes: lengths (C,) -> (C + 1,) int64.

    >>> ivf_offsets(torch.tensor([1, 0, 2])).tolist()
    [0, 1, 1, 3]
    """
    return torch.nn.functional.pad(torch.cumsum(lengths.to(torch.int64), 0), (1, 0))
