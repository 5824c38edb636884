"""build_ivf: codes -> inverted lists, against brute force and against the reference-built index."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colbert.index import format as index_format
from colbert.indexing import ivf as ivf_module
from colbert.index.ivf import build_ivf, build_ivf_from_chunks, ivf_offsets

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COMPAT_INDEX = SHARED / "compat" / "index-scifact1k-nbits2"


def brute_force_ivf(codes: torch.Tensor, doclens: torch.Tensor, num_partitions: int) -> list[list[int]]:
    pid_of = torch.repeat_interleave(torch.arange(len(doclens)), doclens).tolist()
    lists = [set() for _ in range(num_partitions)]
    for code, pid in zip(codes.tolist(), pid_of):
        lists[code].add(pid)
    return [sorted(s) for s in lists]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("block", [3, 64, 1 << 22])
def test_build_ivf_equals_brute_force(seed, block, monkeypatch):
    monkeypatch.setattr(ivf_module, "IVF_CHUNK", block)  # small blocks: many of them, some a single long document
    monkeypatch.setattr(ivf_module, "BLOCK_PER_CENTROID", 0)
    g = torch.Generator().manual_seed(seed)
    num_partitions = int(torch.randint(1, 20, (1,), generator=g))
    doclens = torch.randint(0, 9, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g)
    codes = torch.randint(0, num_partitions, (int(doclens.sum()),), generator=g, dtype=torch.int32)
    ivf, lengths = build_ivf(codes, doclens, num_partitions)
    assert ivf.dtype == torch.int32 and lengths.dtype == torch.int64 and lengths.shape == (num_partitions,)
    offsets = ivf_offsets(lengths)
    got = [ivf[offsets[c] : offsets[c + 1]].tolist() for c in range(num_partitions)]
    assert got == brute_force_ivf(codes, doclens, num_partitions)
    assert (ivf[offsets[-1] :] == 0).all()  # anything after the lists is padding


def test_padding_follows_the_reference():
    # lists [0], [0, 1]: the last list is the longest, so no padding
    ivf, lengths = build_ivf(torch.tensor([0, 1, 1]), torch.tensor([2, 1]), 2)
    assert ivf.tolist() == [0, 0, 1] and lengths.tolist() == [1, 2]
    # lists [0, 1], [0]: a 2-wide window from the last list's start runs past the end, so 2 zeros are appended
    ivf, lengths = build_ivf(torch.tensor([0, 1, 0]), torch.tensor([2, 1]), 2)
    assert ivf.tolist() == [0, 1, 0, 0, 0] and lengths.tolist() == [2, 1]


def test_empty_partitions_and_empty_documents():
    ivf, lengths = build_ivf(torch.tensor([3, 3], dtype=torch.int32), torch.tensor([0, 2, 0]), 5)
    assert lengths.tolist() == [0, 0, 0, 1, 0] and ivf[:1].tolist() == [1]


@pytest.mark.parametrize("seed", range(4))
def test_chunks_give_the_same_lists_as_the_whole(seed, monkeypatch):
    monkeypatch.setattr(ivf_module, "IVF_CHUNK", 16)
    monkeypatch.setattr(ivf_module, "BLOCK_PER_CENTROID", 0)
    g = torch.Generator().manual_seed(seed)
    doclens = torch.randint(0, 12, (60,), generator=g)
    codes = torch.randint(0, 7, (int(doclens.sum()),), generator=g, dtype=torch.int32)
    cuts = [0, 5, 5, 31, 60]  # an empty chunk included
    chunks = []
    for a, b in zip(cuts, cuts[1:]):
        first, last = int(doclens[:a].sum()), int(doclens[:b].sum())
        chunks.append((codes[first:last], doclens[a:b]))
    whole, whole_lengths = build_ivf(codes, doclens, 7)
    ivf, lengths = build_ivf_from_chunks(iter(chunks), 7)
    assert torch.equal(lengths, whole_lengths) and torch.equal(ivf, whole)


def test_build_ivf_rejects_bad_input():
    with pytest.raises(ValueError, match="sum to 3 but there are 2 codes"):
        build_ivf(torch.tensor([0, 1]), torch.tensor([3]), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        build_ivf(torch.tensor([0, 2]), torch.tensor([2]), 2)
    with pytest.raises(ValueError, match="integer"):
        build_ivf(torch.tensor([0.0, 1.0]), torch.tensor([2]), 2)


@pytest.mark.compat
def test_rebuilding_the_reference_ivf_is_exact(monkeypatch):
    if not COMPAT_INDEX.is_dir():
        pytest.skip(f"{COMPAT_INDEX} is missing: the reference-built index lives in ../shared beside the checkout")
    monkeypatch.setattr(ivf_module, "IVF_CHUNK", 10_000)  # several blocks
    monkeypatch.setattr(ivf_module, "BLOCK_PER_CENTROID", 0)
    chunk = index_format.read_chunk(COMPAT_INDEX, 0, dim=128, nbits=2, mmap=True)
    ivf, lengths = build_ivf(chunk.codes, chunk.doclens, 4096)
    expected_ivf, expected_lengths = index_format.read_ivf(COMPAT_INDEX, 4096)
    assert torch.equal(lengths, expected_lengths)
    assert ivf.dtype == expected_ivf.dtype and torch.equal(ivf, expected_ivf)  # padding included
