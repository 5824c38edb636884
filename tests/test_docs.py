"""The docs site builds with --strict, and llms.txt / llms_ctx.txt are what docs/make_llms_ctx.py makes of it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("make_llms_ctx", ROOT / "docs" / "make_llms_ctx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_llms_files_are_current():
    script = load_script()
    assert script.stale() == [], "llms.txt or llms_ctx.txt is out of date: run python docs/make_llms_ctx.py"


def test_llms_txt_lists_every_page_of_the_site():
    script = load_script()
    text = (ROOT / "llms.txt").read_text(encoding="utf-8")
    pages = [name for _, name in script.nav()]
    assert pages[0] == "index.md" and all(f"(docs/{name})" in text for name in pages[1:])
    assert all((ROOT / "docs" / name).is_file() for name in pages)


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "new_checkpoint" in api and "IndexUpdater" in api  # the reference was generated from the docstrings
