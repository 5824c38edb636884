"""Optional: colbert-ai itself loads what we write. Skips unless ../shared/reference/setup.sh was run.

The reference runs in its own virtualenv (COLBERT_REFERENCE_VENV, default ~/.cache/colbert-reference/venv), in a
subprocess whose working directory is outside any git checkout (colbert-ai reads git metadata when it starts).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from colbert import Checkpoint, ColBERTConfig, Indexer, Run, RunConfig
from colbert.data import Collection
from conftest import COMPAT

VENV = Path(os.environ.get("COLBERT_REFERENCE_VENV", Path.home() / ".cache/colbert-reference/venv"))
PYTHON = VENV / "bin" / "python"

pytestmark = [pytest.mark.compat, pytest.mark.slow, pytest.mark.skipif(not PYTHON.exists(), reason=f"no reference venv at {VENV}: "
                                                     "run bash ../shared/reference/setup.sh")]


def run_reference(code: str, tmp_path: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": "",
           "TORCH_EXTENSIONS_DIR": str(VENV.parent / "torch_extensions")}
    proc = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_reference_loads_a_checkpoint_we_saved(minilm_checkpoint, tmp_path):
    ours = Checkpoint(str(minilm_checkpoint), verbose=0)
    ours.save(tmp_path / "saved")
    texts = ["a first document about proteins.", "second one, with punctuation!"]
    code = f"""
import json
from colbert.modeling.checkpoint import Checkpoint
from colbert.infra import ColBERTConfig
ckpt = Checkpoint({str(tmp_path / 'saved')!r}, colbert_config=ColBERTConfig())
D, doclens = ckpt.docFromText({texts!r}, bsize=8, keep_dims='flatten')
Q = ckpt.queryFromText(["what about proteins?"])
print(json.dumps({{"D": D.tolist(), "doclens": doclens, "Q": Q.tolist()}}))
"""
    got = run_reference(code, tmp_path)
    D, doclens = ours.docFromText(texts, bsize=8, keep_dims="flatten")
    assert got["doclens"] == doclens
    assert np.abs(np.array(got["D"]) - D.numpy()).max() < 1e-5
    assert np.abs(np.array(got["Q"]) - ours.queryFromText(["what about proteins?"]).numpy()).max() < 1e-5


def test_the_reference_searches_an_index_we_built(minilm_checkpoint, tmp_path):
    lines = (COMPAT / "collection-scifact1k.tsv").read_text(encoding="utf-8").splitlines()[:200]
    tsv = tmp_path / "c.tsv"
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="rt")):
        path = Indexer(str(minilm_checkpoint), config=ColBERTConfig(nbits=2), verbose=0).index("ours", str(tsv))
    queries = ["cancer therapy outcomes", "protein folding in cells"]
    code = f"""
import json
from colbert import Searcher
from colbert.infra import ColBERTConfig
s = Searcher(index={path!r}, checkpoint={str(minilm_checkpoint)!r}, collection={str(tsv)!r})
print(json.dumps([s.search(q, k=10)[0] for q in {queries!r}]))
"""
    got = run_reference(code, tmp_path)
    from colbert import Searcher

    searcher = Searcher(index=path, checkpoint=str(minilm_checkpoint))
    for q, ref_pids in zip(queries, got):
        ours = searcher.search(q, k=10)[0]
        assert len(set(ours) & set(ref_pids)) >= 8  # same index, same settings; the CPU MaxSim clamp may reorder
    assert len(Collection(path=tsv)) == 200

