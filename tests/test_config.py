from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from colbert import ColBERTConfig, Run, RunConfig
from conftest import COMPAT, ROOT, need_shared

MACHINE_DEPENDENT = {"root", "name", "gpus"}


@pytest.mark.compat
def test_defaults_and_key_order_equal_the_reference():
    need_shared()
    reference = json.loads((COMPAT / "config_defaults.json").read_text())["defaults"]
    ours = ColBERTConfig().export()
    assert list(ours) == list(reference)
    assert {k: v for k, v in ours.items() if k not in MACHINE_DEPENDENT} == {
        k: v for k, v in reference.items() if k not in MACHINE_DEPENDENT}


def test_unknown_key_raises_with_a_suggestion():
    with pytest.raises(TypeError, match="did you mean 'nbits'"):
        ColBERTConfig(nbit=2)


def test_assigned_tracks_explicit_fields_only():
    config = ColBERTConfig(nbits=2, ncells=None)
    assert set(config.assigned) == {"nbits"}
    config.configure(dim=64)
    assert set(config.assigned) == {"nbits", "dim"}


def test_precedence_later_assigned_fields_win():
    checkpoint = ColBERTConfig(doc_maxlen=180, dim=128, query_maxlen=32)
    index = ColBERTConfig(nbits=2, doc_maxlen=200)
    explicit = ColBERTConfig(doc_maxlen=300)
    merged = ColBERTConfig.from_existing(checkpoint, index, explicit, None)
    assert (merged.doc_maxlen, merged.nbits, merged.dim, merged.query_maxlen) == (300, 2, 128, 32)
    assert merged.kmeans_niters == 4  # untouched default


def test_json_round_trip(tmp_path: Path):
    config = ColBERTConfig(nbits=4, doc_maxlen=99, checkpoint="x", overwrite="resume")
    config.save(tmp_path / "c.json")
    loaded = ColBERTConfig.from_path(tmp_path / "c.json")
    assert loaded.export() == config.export()
    with pytest.raises(FileExistsError):
        config.save(tmp_path / "c.json")


def test_from_path_reads_plan_style_and_skips_unknown_keys(tmp_path: Path):
    (tmp_path / "plan.json").write_text(json.dumps({"config": {"nbits": 2, "future_key": 1}, "num_chunks": 3}))
    loaded = ColBERTConfig.load_from_index(tmp_path)
    assert loaded.nbits == 2 and "future_key" not in loaded.export()


def test_load_from_index_without_metadata_names_the_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ColBERTConfig.load_from_index(tmp_path)


def test_run_context_nests_and_restores():
    with Run().context(RunConfig(nranks=2, experiment="a")):
        with Run().context(RunConfig(experiment="b")):
            assert (Run().nranks, Run().experiment) == (2, "b")
        assert Run().experiment == "a"
    assert Run().nranks == 1


def test_positional_config_merges_like_the_reference():
    config = ColBERTConfig(RunConfig(nranks=3), nbits=2)
    assert (config.nranks, config.nbits) == (3, 2)


DEEP = ("data", "modeling", "indexing", "search", "training", "kernels")


def test_deep_modules_never_read_run():
    offenders = []
    for package in DEEP:
        for path in (ROOT / "colbert" / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                    if any(n.startswith("colbert.infra.run") for n in names) or (
                            isinstance(node, ast.ImportFrom) and node.module == "colbert.infra"
                            and any(a.name == "Run" for a in node.names)):
                        offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_import_colbert_is_light():
    import subprocess
    import sys

    code = "import sys, colbert; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_docs_config_md_is_generated_from_the_code():
    from colbert.infra.config import config_markdown

    assert (ROOT / "docs" / "config.md").read_text() == config_markdown(), "run: python -m colbert.infra > docs/config.md"



def test_run_settings_stored_in_a_checkpoint_do_not_decide_where_or_how_an_index_is_built(tiny_checkpoint):
    """artifact.metadata names the training machine's root, experiment, GPUs and ranks: Run's defaults replace them,
    as in the reference; a field the caller sets in the config or in the Run context still wins."""
    from colbert import Indexer

    meta_path = tiny_checkpoint / "artifact.metadata"
    meta = json.loads(meta_path.read_text())
    meta.update(root="/elsewhere/experiments", experiment="old", index_root="/elsewhere/indexes", nranks=8, gpus=0)
    meta_path.write_text(json.dumps(meta))
    config = Indexer(tiny_checkpoint, verbose=0).config
    defaults = RunConfig()
    assert (config.root, config.experiment, config.index_root) == (defaults.root, defaults.experiment, None)
    assert (config.nranks, config.gpus) == (1, None)
    with Run().context(RunConfig(experiment="new")):
        config = Indexer(tiny_checkpoint, config=ColBERTConfig(nranks=2), verbose=0).config
    assert (config.experiment, config.nranks, config.root) == ("new", 2, defaults.root)
