"""Handing freed memory back to the OS between the stages of a build, so that peak RSS does not grow with the
collection.

glibc keeps the memory that freed tensors leave in its heap and per-thread arenas for reuse, in pieces whose
layout depends on everything allocated before. Over a build of many chunks the encoder's activations and each
chunk's embeddings leave more and more such pieces behind: a build of 100,000 short documents (17 chunks) sat at
760 MiB after encoding where one of 5,000 (1 chunk) sat at 641 MiB, and the k-means sample then came on top of
that. `malloc_trim(0)` returns the free pages to the OS, so each stage starts from the memory actually in use.
It changes no allocator setting; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only; musl has no such symbol
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> None:
    """Return the allocator's free memory to the OS (glibc's malloc_trim); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
