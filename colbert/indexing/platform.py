"""Platform workarounds of the CPU build, in one place, so that the pipeline reads as the algorithm.

Each changes memory (or speed), never a result; docs/indexing.md ("Platform workarounds") has what each was
measured to save, and `benchmarks/encode_memory.py` measures them again.

- `release_free_memory`: glibc keeps what freed tensors leave in its heap and arenas; `malloc_trim(0)` returns it
  between the stages of a build, so each stage starts from the memory in use (a no-op elsewhere than glibc).
- `padded_length`: oneDNN compiles and caches kernels per input shape; rounding CPU batch lengths keeps the shapes
  (and the cache) few. Padded tokens are masked out, so the vectors do not change.
- `output_buffer`: an encoder output whose storage exceeds glibc's largest dynamic mmap threshold, so freeing it
  never raises that threshold (which would send every later allocation to the heap).
- `fix_mmap_threshold` (the long-running server, `colbert serve`): glibc raises its mmap threshold each time a large
  mapped block is freed, after which blocks of up to 32 MiB come from the threads' heaps and stay resident there
  between trims; a fixed threshold maps every large block on its own and unmaps it when freed, so a server's memory
  stays flat under concurrent searches and writes (docs/serving.md, `benchmarks/serve.py`).

The switch: `ColBERTConfig(platform_workarounds=False)`, which the build and `encode_passages` turn into
`Workarounds(enabled=False)`, turns all three off (plain allocations, no trimming, batches padded to their longest
passage), for measuring what they buy or for a platform where one misbehaves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

OUTPUT_MIN_BYTES = 33 << 20  # just above glibc's largest dynamic mmap threshold (32 MiB on 64-bit)
SERVER_MMAP_THRESHOLD = 1 << 20  # blocks from 1 MiB up get their own mapping in `colbert serve`
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)


@functools.lru_cache(maxsize=None)
def _libc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    trim = getattr(_libc(), "malloc_trim", None)  # glibc only; musl has no such symbol
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> None:
    """Return the allocator's free memory to the OS (glibc's malloc_trim); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def fix_mmap_threshold(nbytes: int = SERVER_MMAP_THRESHOLD) -> bool:
    """Map every allocation of at least `nbytes` on its own, for the rest of the process (glibc's
    mallopt(M_MMAP_THRESHOLD), which also stops glibc from raising the threshold). True when applied; False (and
    nothing changed) elsewhere than glibc."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None or not hasattr(_libc(), "malloc_trim"):  # mallopt alone is not glibc's
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1


def padded_length(longest: int, doc_maxlen: int) -> int:
    """The length a CPU forward pass of passages of at most `longest` tokens is padded to: rounded up to a multiple
    of 2^(floor(log2(longest)) - 2) (by less than a quarter) or of 16, whichever is smaller, but never past
    doc_maxlen (nor below `longest`): few shapes for oneDNN's kernel cache.

    >>> [padded_length(n, 180) for n in (10, 21, 47, 130, 177, 200)]
    [10, 24, 48, 144, 180, 200]
    """
    granule = min(16, 1 << max(0, longest.bit_length() - 3))  # 2^(floor(log2(longest)) - 2), at most 16
    rounded = -(-longest // granule) * granule
    return max(longest, min(rounded, doc_maxlen))


def output_buffer(rows: int, dim: int) -> Tensor:
    """An uninitialised (rows, dim) fp16 tensor whose storage spans at least `OUTPUT_MIN_BYTES`: always mapped on
    its own by glibc, so its free moves no mmap threshold; the rows past `rows` are never touched, so they take no
    memory. Elsewhere than glibc this is just a larger reservation."""
    storage_rows = max(rows, -(-OUTPUT_MIN_BYTES // (2 * dim)))
    return torch.empty(storage_rows, dim, dtype=torch.float16)[:rows]


@dataclass(frozen=True)
class Workarounds:
    """The one switch: which of the workarounds above the build applies (`config.platform_workarounds`)."""

    enabled: bool = True

    def release_free_memory(self) -> None:
        if self.enabled:
            release_free_memory()

    def padded_length(self, longest: int, doc_maxlen: int) -> Optional[int]:
        """The CPU batch length, or None (pad to the longest passage) when disabled."""
        return padded_length(longest, doc_maxlen) if self.enabled else None

    def output_buffer(self, rows: int, dim: int) -> Tensor:
        if self.enabled:
            return output_buffer(rows, dim)
        return torch.empty(rows, dim, dtype=torch.float16)
