"""Portable bundles: round trip with identical results, and refusal of tampered, truncated and escaping bundles."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.bundle import BundleError, export_bundle, import_bundle
from colbert.cli import main
from colbert.indexing import format as index_format

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
QUERIES = ["cancer therapy trial", "immune virus", "brain heart blood drug"]


@pytest.fixture(scope="module")
def index(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    tsv = root / "collection.tsv"
    tsv.write_text("".join(f"d{i}\t{' '.join(WORDS[(i * 7 + j) % 15] for j in range(3 + i % 9))}\n"
                           for i in range(30)), encoding="utf-8")
    with Run().context(RunConfig(root=str(root), experiment="test")):
        return Path(Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0).index(
            "idx", str(tsv)))


@pytest.fixture(scope="module")
def bundle(index, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "idx.colbert"
    export_bundle(index, out)
    return out


def test_a_round_trip_gives_identical_results(index, bundle, tmp_path):
    imported = import_bundle(bundle, tmp_path / "dest")
    assert imported == tmp_path / "dest" / "index"
    config = index_format.read_metadata(imported)["config"]
    assert Path(config["checkpoint"]) == (tmp_path / "dest" / "checkpoint").resolve()
    assert Path(config["collection"]).read_text() == Path(index_format.read_metadata(index)["config"]["collection"]
                                                          ).read_text()
    for name in os.listdir(index):  # every file but metadata.json byte for byte
        if name != "metadata.json":
            assert (imported / name).read_bytes() == (index / name).read_bytes()
    original, copy = Searcher(str(index), verbose=0), Searcher(str(imported), verbose=0)
    for q in QUERIES:
        assert copy.search(q, k=5) == original.search(q, k=5)
    assert copy.collection[0] == original.collection[0]


def test_checkpoint_by_name_only(index, tmp_path):
    out = tmp_path / "named.colbert"
    manifest = export_bundle(index, out, checkpoint="name")
    assert not any(name.startswith("checkpoint/") for name in manifest["files"])
    imported = import_bundle(out, tmp_path / "dest")
    assert index_format.read_metadata(imported)["config"]["checkpoint"] == manifest["checkpoint"]["name"]


def _rewrite(bundle: Path, out: Path, change) -> Path:
    """Copy a bundle member by member, letting `change(info, data)` return a new (info, data) or None to drop it."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for info in src:
            data = src.extractfile(info).read() if info.isfile() else b""
            changed = change(info, data)
            if changed is not None:
                info, data = changed
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
    return out


def assert_refused(bundle: Path, dest: Path, match: str) -> None:
    with pytest.raises(BundleError, match=match):
        import_bundle(bundle, dest)
    assert not dest.exists() and not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}")]


def test_a_tampered_file_is_refused(bundle, tmp_path):
    def flip(info, data):
        if info.name == "index/0.residuals.pt":
            data = data[:-1] + bytes([data[-1] ^ 1])
        return info, data
    assert_refused(_rewrite(bundle, tmp_path / "t.colbert", flip), tmp_path / "dest", "SHA-256")


def test_a_truncated_bundle_is_refused(bundle, tmp_path):
    data = bundle.read_bytes()
    with tarfile.open(bundle) as tar:
        manifest_at = tar.getmember("manifest.json").offset_data
    for cut in (len(data) // 2, manifest_at + 10, 100):  # mid-file, inside the manifest, inside the first header
        truncated = tmp_path / f"cut{cut}.colbert"
        truncated.write_bytes(data[:cut])
        assert_refused(truncated, tmp_path / "dest", "truncated")


def test_a_missing_or_extra_file_is_refused(bundle, tmp_path):
    drop = _rewrite(bundle, tmp_path / "d.colbert", lambda i, d: None if i.name == "index/ivf.pid.pt" else (i, d))
    assert_refused(drop, tmp_path / "dest", "lacks")

    def add(info, data):
        return (info, data)
    extra = _rewrite(bundle, tmp_path / "e.colbert", add)
    with tarfile.open(extra, "a") as tar:
        info = tarfile.TarInfo("index/extra.pt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert_refused(extra, tmp_path / "dest", "does not list|manifest")


@pytest.mark.parametrize("name", ["../evil.txt", "index/../../evil.txt", "/tmp/evil.txt", "other/evil.txt",
                                  "index//evil.txt"])
def test_member_paths_never_escape_the_destination(bundle, tmp_path, name):
    def rename(info, data):
        if info.name == "index/plan.json":
            info.name = name
        return info, data
    evil = _rewrite(bundle, tmp_path / "evil.colbert", rename)
    assert_refused(evil, tmp_path / "dest", "outside")
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_links_are_refused(bundle, tmp_path):
    evil = tmp_path / "link.colbert"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("index/metadata.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    assert_refused(evil, tmp_path / "dest", "not a regular file")


def test_not_a_bundle_and_an_existing_destination(bundle, tmp_path):
    junk = tmp_path / "junk.colbert"
    junk.write_bytes(b"not a tar file at all" * 100)
    assert_refused(junk, tmp_path / "dest", "cannot be read")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        import_bundle(bundle, tmp_path / "taken")


def test_cli_bundle_export_and_import(index, tmp_path, capsys):
    out = tmp_path / "cli.colbert"
    assert main(["bundle", "export", str(index), str(out), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["checkpoint"] == "included" and exported["collection"] is True
    assert main(["bundle", "export", str(index), str(out)]) == 1  # exists
    capsys.readouterr()
    assert main(["bundle", "import", str(out), str(tmp_path / "dest")]) == 0
    assert str(tmp_path / "dest" / "index") in capsys.readouterr().out
    assert index_format.is_complete(tmp_path / "dest" / "index")


@pytest.mark.slow
@pytest.mark.compat
def test_colbert_ai_searches_an_imported_index(minilm_checkpoint, tmp_path):
    from test_reference_roundtrip import PYTHON, run_reference

    if not PYTHON.exists():
        pytest.skip(f"no reference venv at {PYTHON}")
    from conftest import COMPAT

    tsv = tmp_path / "c.tsv"
    tsv.write_text("\n".join((COMPAT / "collection-scifact1k.tsv").read_text().splitlines()[:200]) + "\n")
    with Run().context(RunConfig(root=str(tmp_path), experiment="b")):
        path = Indexer(str(minilm_checkpoint), config=ColBERTConfig(nbits=2), verbose=0).index("ours", str(tsv))
    export_bundle(path, tmp_path / "b.colbert")
    imported = import_bundle(tmp_path / "b.colbert", tmp_path / "dest")
    code = f"""
import json
from colbert import Searcher
s = Searcher(index={str(imported)!r}, collection={str(tmp_path / 'dest' / 'collection.tsv')!r})
print(json.dumps(s.search("cancer therapy outcomes", k=10)[0]))
"""
    ref = run_reference(code, tmp_path)
    ours = Searcher(str(imported), verbose=0).search("cancer therapy outcomes", k=10)[0]
    assert len(set(ours) & set(ref)) >= 8
