"""Codes -> inverted lists: for each centroid, the passages that have at least one embedding assigned to it.

The layout is the reference's `ivf.pid.pt`: the lists concatenated in centroid order, each sorted, plus their
lengths. The reference then pads the concatenation with `max(lengths)` zeros when the last list is shorter than the
longest one, so that a window of `max(lengths)` pids starting at any list's offset stays inside the tensor (its
StridedTensor reads such windows); `build_ivf` does the same, so rebuilding an index's IVF reproduces it exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import Tensor

from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

IVF_CHUNK = 1 << 18  # embeddings keyed and deduplicated at once: 2**18 x int64 keys = 2 MiB (a few such temporaries)
BLOCK_PER_CENTROID = 4  # ... and at least 4 per centroid, so one block's int32 counts per centroid (C,) stay
#                         below about half of its int32 pids, whatever the number of blocks


def build_ivf(codes: Tensor, doclens: Tensor, num_partitions: int,
              show_progress: bool | None = False) -> tuple[Tensor, Tensor]:
    """Inverted lists from the centroid code of every embedding (no progress bar unless asked: index updates use it).

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
    return build_ivf_from_chunks([(codes, doclens)], num_partitions, show_progress)


def build_ivf_from_chunks(chunks: Iterable[tuple[Tensor, Tensor]], num_partitions: int,
                          show_progress: bool | None = None) -> tuple[Tensor, Tensor]:
    """`build_ivf` over consecutive (codes, doclens) chunks of the passages, read one at a time.

    The embeddings are cut at passage boundaries into blocks of at most `IVF_CHUNK` (or 4 per centroid), so no
    (centroid, pid) pair occurs in two blocks: each block's pairs are deduplicated alone (one sort of
    `code * P + pid` keys), kept as int32 pids with per-centroid counts, and at the end every block's pids are
    copied straight to their place in the output (a centroid's list is its pairs from block 0, then block 1, ...:
    pids grow from block to block). Memory is the output, the blocks' pids and one block's temporaries, not a sort
    of all pairs (2M codes of 100k passages: 54 MiB above the codes instead of 145); no Python loop over embeddings.
    `show_progress=False` hides the bar (None: shown unless the 'colbert' logger is at ERROR).
    """
    pieces: list[tuple[Tensor, Tensor]] = []  # per block: pids sorted by (code, pid) and the count per code
    first_pid = 0
    for codes, doclens in chunks:
        doclens = torch.as_tensor(doclens, dtype=torch.int64)
        if codes.dim() != 1 or codes.is_floating_point() or doclens.dim() != 1:
            raise ValueError(f"codes and doclens must be 1-D integer tensors, got {tuple(codes.shape)} "
                             f"{codes.dtype} and {tuple(doclens.shape)}")
        if int(doclens.sum()) != codes.numel():
            raise ValueError(f"doclens sum to {int(doclens.sum()):,} but there are {codes.numel():,} codes")
        for first, last, block in _blocks(codes, doclens, max(IVF_CHUNK, BLOCK_PER_CENTROID * num_partitions)):
            block = block.to(torch.int64)  # (n,)
            if block.numel() and (int(block.min()) < 0 or int(block.max()) >= num_partitions):
                raise ValueError(f"codes must lie in [0, {num_partitions}); passages {first_pid + first:,}.. have "
                                 f"[{int(block.min())}, {int(block.max())}]")
            width = last - first
            local = torch.repeat_interleave(torch.arange(width), doclens[first:last])  # (n,) passage in the block
            keys = torch.unique(block * width + local)  # (m <= n,) sorted distinct (code, pid) pairs
            counts = torch.bincount(keys // width, minlength=num_partitions).to(torch.int32)  # (C,)
            pieces.append(((keys % width + (first_pid + first)).to(torch.int32), counts))
            del block, local, keys
        first_pid += doclens.numel()
    return _place(pieces, num_partitions, show_progress)


def _blocks(codes: Tensor, doclens: Tensor, size: int):
    """(first passage, end passage, their codes) for runs of whole passages of at most `size` embeddings (or one
    passage, when it is longer)."""
    ends = torch.cumsum(doclens, 0)  # (P,) one past each passage's last embedding
    first, start = 0, 0
    while first < doclens.numel():
        last = max(int(torch.searchsorted(ends, start + size, right=True)), first + 1)
        end = int(ends[last - 1])
        yield first, last, codes[start:end]
        first, start = last, end


def _place(pieces: list[tuple[Tensor, Tensor]], num_partitions: int,
           show_progress: bool | None) -> tuple[Tensor, Tensor]:
    lengths = torch.zeros(num_partitions, dtype=torch.int64)
    for _, counts in pieces:
        lengths += counts
    offsets = ivf_offsets(lengths)[:-1]  # (C,) where each list starts
    total = int(lengths.sum())
    longest = int(lengths.max()) if num_partitions else 0
    # The reference appends max(lengths) zeros when a max-length window from the last list's start would run
    # past the end (i.e. offsets[-2] + longest > len(ivf)).
    padding = longest if num_partitions and longest > int(lengths[-1]) else 0
    ivf = torch.zeros(total + padding, dtype=torch.int32)
    placed = torch.zeros(num_partitions, dtype=torch.int64)  # pairs of each centroid copied so far
    for pids, counts in progress(pieces, desc="Building the IVF", unit="block", enabled=show_progress):
        counts = counts.to(torch.int64)
        code = torch.repeat_interleave(torch.arange(num_partitions), counts)  # (m,) centroid of each pair
        within = torch.arange(pids.numel()) - (torch.cumsum(counts, 0) - counts)[code]  # (m,) rank in its list
        ivf[offsets[code] + placed[code] + within] = pids
        placed += counts
    return ivf, lengths


def ivf_offsets(lengths: Tensor) -> Tensor:
    """Where each list starts, plus the end. Shapes: lengths (C,) -> (C + 1,) int64.

    >>> ivf_offsets(torch.tensor([1, 0, 2])).tolist()
    [0, 1, 1, 3]
    """
    return torch.nn.functional.pad(torch.cumsum(lengths.to(torch.int64), 0), (1, 0))
