"""Document text and metadata stored with an index (documents.jsonl): written by the build, kept in step by
IndexUpdater, read by the Searcher, filtered on before scoring. Tiny random model, 30 passages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, Searcher
from colbert.errors import IndexFormatError
from colbert.indexing import documents as stored
from colbert.indexing.verify import verify_index

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
NUM_DOCS = 30


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(m),), generator=g))
            for m in torch.randint(3, 20, (n,), generator=g)]


DOCS = {f"d{i}": t for i, t in enumerate(texts(NUM_DOCS))}
META = {f"d{i}": {"year": 2000 + i, "even": i % 2 == 0, "tags": ["x", str(i)]} for i in range(NUM_DOCS)}


def build(checkpoint: Path, root: Path, collection, name: str, **kwargs) -> Path:
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="test")):
        indexer = Indexer(str(checkpoint), config=ColBERTConfig(nbits=2), verbose=0)
        return Path(indexer.index(name, collection, overwrite=True, **kwargs))


@pytest.fixture(scope="module")
def master(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    return build(_tiny_checkpoint_master, tmp_path_factory.mktemp("docs"), DOCS, "docs", metadata=META)


@pytest.fixture
def index(master, tmp_path) -> Path:
    return Path(shutil.copytree(master, tmp_path / "idx"))


@pytest.fixture
def searcher(index) -> Searcher:
    return Searcher(str(index), verbose=0)


def test_the_build_stores_text_and_metadata_in_pid_order(master):
    lines = (master / stored.DOCUMENTS_FILE).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == list(DOCS)
    assert [r["text"] for r in records] == list(DOCS.values())
    assert records[3]["metadata"] == META["d3"]
    assert verify_index(master) == []  # the extra file is no problem for the index


def test_the_searcher_returns_stored_documents(searcher):
    assert searcher.document("d7") == {"id": "d7", "text": DOCS["d7"], "metadata": META["d7"]}
    with pytest.raises(KeyError, match="nope"):
        searcher.document("nope")


def test_no_documents_without_the_option(_tiny_checkpoint_master, tmp_path):
    index = build(_tiny_checkpoint_master, tmp_path, texts(12), "plain")
    assert not (index / stored.DOCUMENTS_FILE).exists()
    searcher = Searcher(str(index), verbose=0)
    assert searcher.documents is None
    with pytest.raises(ValueError, match="store_documents=True"):
        searcher.metadata_filter(lambda m: True)
    index = build(_tiny_checkpoint_master, tmp_path, texts(12), "texts", store_documents=True)
    assert Searcher(str(index), verbose=0).document(3) == {"id": 3, "text": texts(12)[3], "metadata": {}}


@pytest.mark.parametrize("exact", [False, True])
def test_metadata_filter_applies_before_scoring(searcher, exact):
    query = "cancer therapy trial"
    everything = searcher.search(query, k=NUM_DOCS, exact=True)[0]
    ids, _, _ = searcher.search(query, k=5, filter_fn=searcher.metadata_filter(lambda m: m["even"]), exact=exact)
    assert ids and all(META[i]["even"] for i in ids)
    if exact:  # scored before the cut: the 5 best even documents of the full ranking
        assert ids == [i for i in everything if META[i]["even"]][:5]


def test_ids_where_as_an_allow_list_scores_every_match(searcher):
    late = searcher.ids_where(lambda m: m["year"] >= 2025)
    assert late == [f"d{i}" for i in range(25, 30)]
    ids, _, _ = searcher.search("immune virus", k=10, pids=late)
    assert sorted(ids) == sorted(late)


def test_updater_keeps_documents_in_step_and_persists_them(searcher, index):
    updater = IndexUpdater(searcher=searcher)
    updater.add({"new-1": "brain heart blood", "new-2": "mouse gene"}, metadata={"new-1": {"year": 1990}})
    updater.remove(["d0", "d5"])
    assert searcher.document("new-1")["metadata"] == {"year": 1990}
    assert searcher.document("new-2") == {"id": "new-2", "text": "mouse gene", "metadata": {}}
    with pytest.raises(KeyError):
        searcher.document("d5")
    old = [i for i in searcher.ids_where(lambda m: m.get("year", 3000) < 2000)]
    assert old == ["new-1"]
    updater.persist_to_disk()
    fresh = Searcher(str(index), verbose=0)
    assert fresh.documents.ids == fresh.loaded.doc_ids
    assert fresh.document("new-1")["text"] == "brain heart blood"
    # pid-stable edits: d0 and d5 keep their pids (0 and 5) with null ids; the two new documents come after
    assert "d0" not in fresh.documents.ids and len(fresh.documents) == NUM_DOCS + 2
    assert [p for p, i in enumerate(fresh.documents.ids) if i is None] == [0, 5] and fresh.loaded.num_live == NUM_DOCS
    assert fresh.documents.at(fresh.loaded.pid_of("new-2"))["text"] == "mouse gene"
    assert verify_index(index) == []


def test_updater_validates_metadata_before_any_work(searcher, index, tmp_path, _tiny_checkpoint_master):
    updater = IndexUpdater(searcher=searcher)
    with pytest.raises(TypeError, match="must be a dict"):
        updater.add({"n": "gene"}, metadata={"n": ["not", "a", "dict"]})
    with pytest.raises(ValueError, match="1 entries for 2"):
        updater.add(["gene", "cell"], ids=["a", "b"], metadata=[{}])
    with pytest.raises(ValueError, match="cannot be stored as JSON"):
        updater.add({"n": "gene"}, metadata={"n": {"bad": float("nan")}})
    assert not updater.pending
    plain = build(_tiny_checkpoint_master, tmp_path, texts(12), "plain")
    with pytest.raises(ValueError, match="stores no documents"):
        IndexUpdater(searcher=str(plain)).add(["gene"], metadata=[{"a": 1}])


def test_indexer_rejects_metadata_that_does_not_fit_before_building(_tiny_checkpoint_master, tmp_path):
    with pytest.raises(ValueError, match="not passages of the collection"):
        build(_tiny_checkpoint_master, tmp_path, DOCS, "bad", metadata={"zzz": {}})
    with pytest.raises(ValueError, match="store_documents=False"):
        build(_tiny_checkpoint_master, tmp_path, DOCS, "bad", metadata=META, store_documents=False)
    assert not (tmp_path / "test" / "indexes" / "bad").exists()


def test_a_documents_file_of_another_index_is_refused(index):
    path = index / stored.DOCUMENTS_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(IndexFormatError, match="29 documents for 30 passages"):
        Searcher(str(index), verbose=0).documents
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(IndexFormatError, match="line 1 is not JSON"):
        Searcher(str(index), verbose=0).documents

