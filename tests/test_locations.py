"""Where indexes and run outputs go: exactly where colbert-ai 0.2.22 puts them, for every way scripts say it.

tests/location_probe.py resolves the folders for many combinations (root/experiment/index_root in RunConfig or in
ColBERTConfig, nested Run contexts, index_path, names that are paths) without building anything. EXPECTED below is
what colbert-ai 0.2.22 printed for it (run in its side venv, ~/.cache/colbert-reference/venv, on 2026-12-07);
test_the_probe_agrees_with_colbert_ai runs it there again and compares live.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.index.loaded import LoadedIndex

HERE = Path(__file__).resolve().parent
REFERENCE_PYTHON = Path(os.environ.get("COLBERT_REFERENCE_VENV", Path.home() / ".cache/colbert-reference/venv")) \
    / "bin" / "python"
TIMESTAMP = re.compile(r"\d{4}-\d\d/\d\d/\d\d\.\d\d\.\d\d")  # the default run name, one per process

# colbert-ai 0.2.22's answers (location_probe.py run by its python from an empty folder; <ts> is its run name, the
# time colbert was imported). Note what it ignores: root, experiment and index_root given in config= (its Run()
# always has all run settings assigned, and Run comes last in every merge), while index_path in config= wins.
R = "<cwd>/r1/default/location_probe/<ts>"
D = "<cwd>/experiments/default/location_probe/<ts>"
EXPECTED = {
    "config_index_path": {"index": "<cwd>/p1", "run_path": R, "search": "<cwd>/r1/default/indexes/idx"},
    "config_index_root": {"index": "<cwd>/experiments/default/indexes/idx", "run_path": D,
                          "search": "<cwd>/experiments/default/indexes/idx"},
    "config_name": {"run_path": R, "train_config_path": R},
    "config_root_for_training": {"run_path": D, "train_config_path": D},
    "config_root_inside_run_nranks": {"index": "<cwd>/experiments/default/indexes/idx", "run_path": D,
                                      "search": "<cwd>/experiments/default/indexes/idx"},
    "config_root_without_run": {"index": "<cwd>/experiments/default/indexes/idx", "run_path": D,
                                "search": "<cwd>/experiments/default/indexes/idx"},
    "defaults": {"index": "<cwd>/experiments/default/indexes/idx", "run_path": D,
                 "search": "<cwd>/experiments/default/indexes/idx"},
    "empty_name": {"index": "<cwd>/r1/e1/indexes", "run_path": "<cwd>/r1/e1/location_probe/<ts>",
                   "search": "<cwd>/r1/e1/indexes"},
    "name_is_absolute_path": {"index": "<cwd>/abs/idx", "run_path": R, "search": "<cwd>/abs/idx"},
    "name_with_folder": {"index": "<cwd>/r1/default/indexes/sub/idx", "run_path": R,
                         "search": "<cwd>/r1/default/indexes/sub/idx"},
    "nested_runs": {"index": "<cwd>/r1/e2/indexes/idx", "run_path": "<cwd>/r1/e2/location_probe/<ts>",
                    "search": "<cwd>/r1/e2/indexes/idx"},
    "relative_run_root": {"index": "rel/e1/indexes/idx", "run_path": "rel/e1/location_probe/<ts>",
                          "search": "rel/e1/indexes/idx"},
    "run_index_root": {"index": "<cwd>/i1/idx", "run_path": D, "search": "<cwd>/i1/idx"},
    "run_index_root_and_config_index_path": {"index": "<cwd>/p1", "run_path": D},
    "run_name": {"run_path": "<cwd>/r1/e1/location_probe/n1", "train_config_path": "<cwd>/r1/e1/location_probe/n1"},
    "run_root": {"index": "<cwd>/r1/e1/indexes/idx", "run_path": "<cwd>/r1/e1/location_probe/<ts>",
                 "search": "<cwd>/r1/e1/indexes/idx"},
    "run_root_and_config_root": {"index": "<cwd>/r1/e1/indexes/idx", "run_path": "<cwd>/r1/e1/location_probe/<ts>",
                                 "search": "<cwd>/r1/e1/indexes/idx"},
    "searcher_index_root_argument": {"run_path": R, "search": "<cwd>/arg/idx"},
}


def run_probe(python: str, checkpoint: Path, folder: Path, env: dict | None = None) -> dict:
    """location_probe.py run by `python` from `folder` (empty), with timestamps replaced by <ts> after checking
    that the process used one run name throughout."""
    folder.mkdir()
    shutil.copy(HERE / "location_probe.py", folder)
    subprocess.run([python, "location_probe.py", str(checkpoint), "out.json"], cwd=folder, check=True,
                   capture_output=True, env=env, timeout=600)
    raw = json.loads((folder / "out.json").read_text())
    stamps = {m for case in raw.values() for v in case.values() for m in TIMESTAMP.findall(v)}
    assert len(stamps) == 1, stamps  # one default run name per process, as the reference (frozen at import there)
    return {case: {k: TIMESTAMP.sub("<ts>", v) for k, v in result.items()} for case, result in raw.items()}


def test_the_probe_finds_the_folders_colbert_ai_finds(tiny_checkpoint, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}  # this library, whatever the probe's folder
    assert run_probe(sys.executable, tiny_checkpoint, tmp_path / "ours", env) == EXPECTED


@pytest.mark.compat
def test_the_probe_agrees_with_colbert_ai(tiny_checkpoint, tmp_path):
    if not REFERENCE_PYTHON.is_file():
        pytest.skip(f"colbert-ai's side venv is absent ({REFERENCE_PYTHON}); see ../shared/reference/setup.sh")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    reference = run_probe(str(REFERENCE_PYTHON), tiny_checkpoint, tmp_path / "reference", env)
    ours = run_probe(sys.executable, tiny_checkpoint, tmp_path / "ours", {**os.environ, "PYTHONPATH": str(HERE.parent)})
    assert ours == reference
    assert reference == EXPECTED  # the written-out expectation above is still colbert-ai's answer


def test_root_in_config_is_ignored_with_a_warning(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Run().context(RunConfig(nranks=1)):
        with pytest.warns(UserWarning, match=r"ColBERTConfig\(root='/elsewhere'\) passed as config= is ignored"):
            config = Indexer(str(tiny_checkpoint), config=ColBERTConfig(root="/elsewhere", nbits=2), verbose=0).config
    assert (config.root, config.nbits) == (str(tmp_path / "experiments"), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same value as the Run's: nothing to warn about
        with Run().context(RunConfig(root="/x", experiment="e")):
            Indexer(str(tiny_checkpoint), config=ColBERTConfig(root="/x", experiment="e"), verbose=0)


def test_a_build_and_a_ranking_land_where_colbert_ai_puts_them(tiny_checkpoint, tmp_path, monkeypatch):
    """The issue's script: ColBERTConfig(root=..., experiment=...) inside Run().context(RunConfig(nranks=1))."""
    monkeypatch.chdir(tmp_path)
    docs = ["gene therapy for cancer", "heart disease risk", "immune cells fight virus", "brain protein"] * 5
    with Run().context(RunConfig(nranks=1)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = ColBERTConfig(root=str(tmp_path / "mine"), experiment="mine", nbits=2)
        path = Indexer(str(tiny_checkpoint), config=config, verbose=0).index("idx", docs)
        searcher = Searcher("idx", config=config, verbose=0)
        saved = searcher.search_all({1: "gene therapy"}, k=2).save("ranking.tsv")
        run_path = Path(Run().path_)
    assert path == str(tmp_path / "experiments" / "default" / "indexes" / "idx")
    assert LoadedIndex.open(path).num_passages == 20 and not (tmp_path / "mine").exists()
    assert Path(saved) == run_path / "ranking.tsv"
    assert run_path.parent.parent.parent.parent == tmp_path / "experiments" / "default"  # script level, then y-m/d/t


def test_index_names_may_be_paths_but_not_escape(tiny_checkpoint, tmp_path):
    docs = ["gene therapy", "heart risk", "immune virus", "brain protein"] * 4
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="e")):
        indexer = Indexer(str(tiny_checkpoint), config=ColBERTConfig(nbits=2), verbose=0)
        assert indexer.index("sub/idx", docs) == str(tmp_path / "e" / "indexes" / "sub" / "idx")
        absolute = tmp_path / "elsewhere" / "idx"
        assert indexer.index(str(absolute), docs) == str(absolute)
        assert Searcher(str(absolute), verbose=0).search("gene therapy", k=1)[0][0] % 4 == 0  # a copy of doc 0
        for bad in ("../idx", "sub/../idx", "sub/./idx", "sub/.idx", "sub/"):
            with pytest.raises(ValueError, match="parts are not '.' or '..'"):
                indexer.index(bad, docs)


def test_a_build_never_replaces_a_folder_that_is_not_an_index(tiny_checkpoint, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("keep me")
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="e")):
        indexer = Indexer(str(tiny_checkpoint), config=ColBERTConfig(nbits=2, index_path=str(folder)), verbose=0)
        with pytest.raises(ValueError, match="not an index"):
            indexer.index("idx", ["a passage", "another"], overwrite=True)
    assert (folder / "todo.txt").read_text() == "keep me"
