"""The server's fixed mmap threshold (colbert.indexing.platform.fix_mmap_threshold): measured in child processes,
since mallopt changes the allocator for the rest of the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import sys
import torch
from colbert.indexing import platform

def anon_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))

if sys.argv[1] == "fixed":
    assert platform.fix_mmap_threshold()
big = torch.ones(20 << 18)  # 20 MiB: mapped on its own; freeing it raises glibc's dynamic threshold to 20 MiB
del big
before = anon_kib()
blocks = [torch.ones(1 << 20) for _ in range(8)]  # 8 x 4 MiB, below the raised threshold: heap, unless fixed
del blocks
print(anon_kib() - before)
"""


def retained_kib(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt; a no-op elsewhere")
def test_a_fixed_mmap_threshold_gives_freed_blocks_back():
    from colbert.indexing import platform

    if platform._malloc_trim() is None:
        pytest.skip("not glibc")
    dynamic, fixed = retained_kib("dynamic"), retained_kib("fixed")
    assert dynamic > 16 << 10, f"the dynamic threshold kept {dynamic} KiB of freed 4 MiB blocks (expected ~32 MiB)"
    assert fixed < 2 << 10, f"the fixed threshold kept {fixed} KiB of freed 4 MiB blocks"
