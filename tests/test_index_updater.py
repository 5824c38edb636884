"""IndexUpdater: adds and removes seen at once and after persist, stable ids, IVF consistency, bad input,
verify_index, drift and reindex. Tiny random model, indexes of 40 passages built once and copied per test."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, Searcher, verify_index
from colbert.errors import DriftWarning, IndexFormatError
from colbert.indexing import plan as index_plan
from colbert.index.edits import IndexState, refit_codec
from colbert.index.ivf import build_ivf
from colbert.index.versions import IndexChangedError
from colbert.index.loaded import LoadedIndex
from conftest import COMPAT, need_shared

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(l),), generator=g))
            for l in torch.randint(3, 30, (n,), generator=g)]


def build(checkpoint: Path, root: Path, collection, name: str = "idx", **config) -> Path:
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="test")):
        indexer = Indexer(str(checkpoint), config=ColBERTConfig(**{"nbits": 2, **config}), verbose=0)
        return Path(indexer.index(name, collection, overwrite=True))


STRING_DOCS = {f"d{i}": t for i, t in enumerate(texts(40))}


@pytest.fixture(scope="module")
def master_indexes(_tiny_checkpoint_master, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("updater")
    return {"str": build(_tiny_checkpoint_master, root, STRING_DOCS, name="str"),
            "int": build(_tiny_checkpoint_master, root, texts(40), name="int")}


@pytest.fixture
def index(master_indexes, tmp_path) -> Path:
    return Path(shutil.copytree(master_indexes["str"], tmp_path / "indexes" / "idx"))


@pytest.fixture
def int_index(master_indexes, tmp_path) -> Path:
    return Path(shutil.copytree(master_indexes["int"], tmp_path / "indexes" / "ints"))


@pytest.fixture
def searcher(index, _tiny_checkpoint_master) -> Searcher:
    return Searcher(str(index), checkpoint=str(_tiny_checkpoint_master), verbose=0)


def every_id(searcher: Searcher, query: str = "protein cell", exact: bool = True) -> set:
    """All documents a search can return: k above the collection size."""
    ids, _, _ = searcher.search(query, k=1000, exact=exact)
    return set(ids)


def assert_ivf_matches_codes(loaded: LoadedIndex) -> None:
    ivf, lengths = build_ivf(loaded.codes, loaded.doclens, loaded.num_partitions)
    n = int(lengths.sum())
    assert torch.equal(lengths, loaded.ivf_lengths) and torch.equal(ivf[:n], loaded.ivf[:n])


# ----------------------------------------------------------------------------------------------- behaviour


def test_the_searcher_sees_adds_and_removes_at_once_and_a_new_one_after_persist(searcher, index):
    updater = IndexUpdater(config=searcher.config, searcher=searcher)
    assert updater.add({"new-1": "virus virus brain", "new-2": "heart"}) == ["new-1", "new-2"]
    assert updater.remove(["d3", "d17", "d3"]) == ["d3", "d17"]
    expected = set(STRING_DOCS) - {"d3", "d17"} | {"new-1", "new-2"}
    assert every_id(searcher) == expected and updater.pending
    before = searcher.search("virus brain", k=5)
    assert Searcher(str(index), checkpoint=searcher.config.checkpoint, verbose=0).loaded.num_passages == 40
    updater.persist_to_disk()
    assert not updater.pending and verify_index(index) == []
    fresh = Searcher(str(index), checkpoint=searcher.config.checkpoint, verbose=0)
    assert every_id(fresh) == expected
    assert fresh.search("virus brain", k=5) == searcher.search("virus brain", k=5) == before
    assert not [p for p in index.parent.iterdir() if p.name.startswith(".")]  # no staging or old versions left


def test_removed_documents_are_never_returned_by_any_search_mode(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    removed = [f"d{i}" for i in range(0, 40, 3)]
    updater.remove(removed)
    for query in ["protein", "virus brain heart blood", ""]:
        for exact in (False, True):
            assert not every_id(searcher, query, exact) & set(removed)
    with pytest.raises(ValueError, match="not documents of the index"):
        searcher.search("protein", k=5, pids=["d0"])
    ids, _, _ = searcher.search("protein", k=5, pids=["d1", "d2"])
    assert set(ids) == {"d1", "d2"}


def test_an_id_removed_and_added_again_holds_the_new_text(searcher, index):
    updater = IndexUpdater(searcher.config, searcher)
    new_text = "mouse mouse mouse trial"
    updater.remove(["d5"])
    updater.add({"d5": new_text})
    embeddings, _ = searcher.checkpoint.docFromText([new_text], keep_dims="flatten")
    expected_codes, _ = updater.loaded.codec.compress(embeddings)
    for loaded in (searcher.loaded, (updater.persist_to_disk(), LoadedIndex.open(index))[1]):
        codes, _, _ = loaded.lookup(torch.tensor([loaded.pid_of("d5")]))
        assert torch.equal(codes, expected_codes)
    assert LoadedIndex.open(index).doc_ids.count("d5") == 1


def test_ids_assigned_to_lists_are_the_next_free_integers_and_never_reused(int_index, _tiny_checkpoint_master):
    updater = IndexUpdater(None, str(int_index), checkpoint=str(_tiny_checkpoint_master))
    assert updater.add(["one", "two"]) == [40, 41]
    updater.remove([41, 3])
    assert updater.add(["three"]) == [42]
    updater.persist_to_disk()
    loaded = LoadedIndex.open(int_index)
    assert loaded.doc_ids is None and loaded.pid_of(42) == 42  # ids are still the pids: no doc_ids.json
    assert IndexUpdater(None, str(int_index), checkpoint=str(_tiny_checkpoint_master)).add(["four"]) == [43]


def test_pids_stay_stable_as_in_the_reference(int_index, _tiny_checkpoint_master):
    """A removed passage keeps its position with doclen 0; colbert-ai reads the same ids for the same documents."""
    searcher = Searcher(str(int_index), checkpoint=str(_tiny_checkpoint_master), verbose=0)
    before = dict(zip(*searcher.search("protein cell", k=40, exact=True)[::2]))
    updater = IndexUpdater(searcher.config, searcher)
    updater.remove([3, 17])
    assert updater.add(["gene gene"]) == [40] and len(updater) == 39
    updater.persist_to_disk()
    assert not (int_index / "doc_ids.json").exists() and verify_index(int_index) == []
    doclens = json.loads((int_index / "doclens.0.json").read_text())
    assert len(doclens) == 41 and doclens[3] == doclens[17] == 0 and min(doclens[:3] + doclens[18:]) > 0
    ivf, lengths = torch.load(int_index / "ivf.pid.pt")
    assert ivf.numel() == int(lengths.sum()) and not set(ivf.tolist()) & {3, 17}  # unpadded, as colbert-ai's
    meta = json.loads((int_index / "metadata.json").read_text())
    assert meta["num_embeddings"] == sum(doclens) and meta["avg_doclen"] == sum(doclens) / 39
    fresh = Searcher(str(int_index), checkpoint=str(_tiny_checkpoint_master), verbose=0)
    after = dict(zip(*fresh.search("protein cell", k=40, exact=True)[::2]))
    assert set(after) == set(before) - {3, 17} | {40}
    assert all(abs(after[pid] - before[pid]) < 1e-4 for pid in after if pid != 40)  # same pid, same document
    with pytest.raises(KeyError):
        fresh.loaded.pid_of(3)
    with pytest.raises(ValueError, match="not documents of the index"):
        fresh.search("protein", pids=[3, 4])
    updater = IndexUpdater(None, str(int_index), checkpoint=str(_tiny_checkpoint_master))
    with pytest.raises(ValueError, match="not in the index"):
        updater.remove([17])
    assert 3 not in updater and 4 in updater and updater.add(["x"]) == [41]


def test_string_ids_survive_removal_as_null_in_doc_ids(searcher, index):
    updater = IndexUpdater(searcher.config, searcher)
    updater.remove(["d1", "d39"])
    updater.add({"d1": "brain heart"})
    updater.persist_to_disk()
    stored = json.loads((index / "doc_ids.json").read_text())
    assert stored[:3] == ["d0", None, "d2"] and stored[39] is None and stored[40] == "d1" and len(stored) == 41
    loaded = LoadedIndex.open(index)
    assert loaded.pid_of("d1") == 40 and loaded.num_live == 39 and verify_index(index) == []
    stored[2] = None  # a live passage without an id
    (index / "doc_ids.json").write_text(json.dumps(stored))
    with pytest.raises(IndexFormatError, match="no id .null. for pid 2"):
        LoadedIndex.open(index)


def test_a_filter_cannot_bring_back_a_removed_passage(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    updater.remove(["d0", "d1"])
    everything = lambda pids: torch.arange(40)  # noqa: E731  every pid, removed ones included
    for exact in (False, True):
        ids, _, _ = searcher.search("protein cell", k=40, filter_fn=everything, exact=exact)
        assert ids and not {"d0", "d1"} & set(ids)


def test_string_index_assigns_string_ids(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    assert updater.add(["x", "y"], ids=None) == ["0", "1"]
    assert updater.add(["z"], ids=["7"]) == ["7"] and updater.add(["w"]) == ["8"]


def test_the_ivf_kept_in_memory_equals_the_one_rebuilt_from_the_codes(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    g = torch.Generator().manual_seed(0)
    for step in range(8):
        ids = updater.ids
        if step % 2:
            picks = torch.randperm(len(ids), generator=g)[: 1 + step].tolist()
            updater.remove([ids[i] for i in picks])
        else:
            updater.add(texts(3 + step, seed=100 + step))
        assert_ivf_matches_codes(searcher.loaded)
        assert searcher.loaded.num_embeddings == int(searcher.loaded.doclens.sum())


def test_each_edit_publishes_the_editors_own_new_loaded_index_and_leaves_the_last_whole(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    updater.add({"n1": "virus brain heart", "n2": "mouse gene"})
    before = searcher.index_handle.snapshot().loaded
    doclens, codes, ids = before.doclens.clone(), before.codes.clone(), list(before.doc_ids)
    updater.remove(["d3", "n1"])
    updater.add({"n3": "immune cell"})
    after = searcher.index_handle.snapshot().loaded
    with searcher.index_handle.writing():
        assert after is searcher.index_handle.edits.state.index  # no copy between the editor and search
    assert after is not before and after.doclens[before.pid_of("d3")] == 0 and after.pid_of("n3") == 42
    assert torch.equal(before.doclens, doclens) and torch.equal(before.codes, codes) and before.doc_ids == ids
    assert before.pid_of("d3") == 3 and before.metadata["num_embeddings"] == int(doclens.sum())
    assert "d3" in before and "d3" not in after and "n3" in after and [] not in after  # [] is unhashable


def test_added_passages_stay_one_residual_tensor_and_untouched_rows_are_not_copied(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    base = searcher.loaded.residual_chunks[0]  # the index as opened: one tensor in RAM
    for step in range(4):
        updater.add(texts(2, seed=200 + step))
    updater.remove([updater.ids[-1]])  # an added passage: the original rows stay where they were
    chunks = searcher.loaded.residual_chunks
    assert len(chunks) == 2 and chunks[0].data_ptr() == base.data_ptr()  # a view of the original, then the added
    assert sum(len(c) for c in chunks) == searcher.loaded.num_embeddings
    assert every_id(searcher) == set(updater.ids)


def test_a_recompressed_state_counts_its_new_codec(searcher):
    state = IndexState.from_loaded(searcher.loaded)
    old = state.index.codec
    new = refit_codec(state, old, lambda points, C: points[: C // 2].half())  # half as many centroids
    state.recompress(new, old)
    assert state.index.num_partitions == new.centroids.size(0) == old.centroids.size(0) // 2
    assert state.index.metadata == state.current_metadata() and state.index.metadata["num_partitions"] == \
        state.index.num_partitions
    assert_ivf_matches_codes(state.index)
    assert state.index is not searcher.loaded and searcher.loaded.num_partitions == old.centroids.size(0)


def test_untouched_chunks_are_hard_linked_and_added_passages_fill_chunks(_tiny_checkpoint_master, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(index_plan, "CHUNK_EMBEDDINGS_BUDGET", 10 * 64)  # chunks of 10 passages
    path = build(_tiny_checkpoint_master, tmp_path, STRING_DOCS)
    assert json.loads((path / "metadata.json").read_text())["num_chunks"] == 4
    inode = (path / "0.residuals.pt").stat().st_ino
    updater = IndexUpdater(None, str(path), checkpoint=str(_tiny_checkpoint_master))
    updater.remove(["d12", "d39"])
    updater.add({f"n{i}": t for i, t in enumerate(texts(14, seed=5))})
    updater.persist_to_disk()
    meta = json.loads((path / "metadata.json").read_text())
    sizes = [json.loads((path / f"{k}.metadata.json").read_text())["num_passages"] for k in range(meta["num_chunks"])]
    assert sizes == [10, 10, 10, 10, 10, 4]  # removed passages keep their places; new chunks of 10 after
    assert (path / "0.residuals.pt").stat().st_ino == inode  # linked, not rewritten
    assert verify_index(path) == [] and meta["num_embeddings"] == int(LoadedIndex.open(path).doclens.sum())
    assert meta["updates"]["added_embeddings"] > 0


def test_an_updater_on_an_index_folder_needs_no_searcher(index, _tiny_checkpoint_master):
    updater = IndexUpdater(None, str(index), checkpoint=str(_tiny_checkpoint_master))
    updater.add({"x": "gene"})
    assert "x" in updater and len(updater) == 41 and updater.loaded.num_passages == 41
    updater.persist_to_disk()
    updater.persist_to_disk()  # nothing pending: a no-op
    assert LoadedIndex.open(index).pid_of("x") == 40


def update_like_colbert_ai(path: Path, pid: int) -> None:
    """What colbert-ai 0.2.22's IndexUpdater.remove + persist_to_disk leave on disk (read from its source): the
    passage's rows cut from its chunk, its doclen set to 0, the pid dropped from the IVF (unpadded), the chunk's
    num_embeddings lowered, and metadata.json's num_embeddings lowered and then raised by the whole index's count."""
    doclens = json.loads((path / "doclens.0.json").read_text())
    start, n = sum(doclens[:pid]), doclens[pid]
    for name in ("0.codes.pt", "0.residuals.pt"):
        t = torch.load(path / name)
        torch.save(torch.cat([t[:start], t[start + n:]]), path / name)
    total = sum(doclens)
    doclens[pid] = 0
    (path / "doclens.0.json").write_text(json.dumps(doclens))
    chunk = json.loads((path / "0.metadata.json").read_text())
    (path / "0.metadata.json").write_text(json.dumps({**chunk, "num_embeddings": chunk["num_embeddings"] - n}))
    meta = json.loads((path / "metadata.json").read_text())
    (path / "metadata.json").write_text(json.dumps({**meta, "num_embeddings": meta["num_embeddings"] - n + total}))
    ivf, lengths = torch.load(path / "ivf.pid.pt")
    ivf = ivf[: int(lengths.sum())]
    list_of = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    keep = ivf != pid
    torch.save((ivf[keep], torch.bincount(list_of[keep], minlength=lengths.numel())), path / "ivf.pid.pt")


def test_an_index_updated_by_colbert_ai_opens_and_its_overcount_is_tolerated(int_index, _tiny_checkpoint_master):
    update_like_colbert_ai(int_index, 3)
    assert verify_index(int_index) == []  # num_embeddings too large and a stale avg_doclen are tolerated
    searcher = Searcher(str(int_index), checkpoint=str(_tiny_checkpoint_master), verbose=0)
    assert searcher.loaded.num_passages == 40 and searcher.loaded.num_live == 39
    for exact in (False, True):
        assert 3 not in every_id(searcher, exact=exact) and 4 in every_id(searcher, exact=exact)
    updater = IndexUpdater(searcher.config, searcher)
    assert 3 not in updater and updater.add(["gene"]) == [40]
    updater.persist_to_disk()  # writes exact totals again
    meta = json.loads((int_index / "metadata.json").read_text())
    assert meta["num_embeddings"] == int(LoadedIndex.open(int_index).doclens.sum())
    (int_index / "metadata.json").write_text(json.dumps({**meta, "num_embeddings": meta["num_embeddings"] - 1}))
    with pytest.raises(IndexFormatError, match="says .* embeddings but its 1 chunks hold"):
        LoadedIndex.open(int_index)  # too small is never tolerated: colbert-ai sizes its buffers by it


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_input_raises_and_changes_nothing(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    with pytest.raises(ValueError, match="'nope'.*nothing was removed"):
        updater.remove(["d1", "nope"])
    with pytest.raises(TypeError, match="wrap a single id"):
        updater.remove("d1")
    with pytest.raises(ValueError, match="already in the index: 'd2'"):
        updater.add({"d2": "again", "fresh": "text"})
    with pytest.raises(ValueError, match="repeated"):
        updater.add(["a", "b"], ids=["z", "z"])
    with pytest.raises(ValueError, match="2 ids for 1"):
        updater.add(["a"], ids=["y", "w"])
    with pytest.raises(TypeError, match="not one str"):
        updater.add("one text")
    with pytest.raises(TypeError, match="passage 1"):
        updater.add(["ok", None])
    with pytest.raises(ValueError, match="empty index"):
        updater.remove(updater.ids)
    assert updater.add([]) == [] and updater.add({}) == [] and updater.remove([]) == []
    assert not updater.pending and every_id(searcher) == set(STRING_DOCS)


def test_a_deleted_or_replaced_index_refuses_changes_and_keeps_them_in_memory(searcher, index):
    updater = IndexUpdater(searcher.config, searcher)
    updater.add({"kept": "brain"})
    shutil.rmtree(index)
    for call in (lambda: updater.add(["more"]), lambda: updater.remove(["d1"]), updater.persist_to_disk):
        with pytest.raises(IndexChangedError, match="was deleted"):
            call()
    assert "kept" in every_id(searcher)  # the searcher still serves what it had


def test_a_second_writer_cannot_overwrite_the_first(index, _tiny_checkpoint_master):
    first = IndexUpdater(None, str(index), checkpoint=str(_tiny_checkpoint_master))
    second = IndexUpdater(None, str(index), checkpoint=str(_tiny_checkpoint_master))
    first.remove(["d1"])
    second.remove(["d2"])
    first.persist_to_disk()
    with pytest.raises(IndexChangedError, match="another writer"):
        second.persist_to_disk()
    assert set(LoadedIndex.open(index).doc_ids) == set(STRING_DOCS) - {"d1"} | {None}  # d1 keeps its place


def test_config_must_match_the_index(searcher):
    with pytest.raises(ValueError, match="nbits"):
        IndexUpdater(ColBERTConfig(nbits=4), searcher)
    with pytest.raises(TypeError, match="needs the Searcher"):
        IndexUpdater(ColBERTConfig())


# ----------------------------------------------------------------------------------------------- verify_index


def test_verify_index_lists_every_problem(index):
    assert verify_index(index) == []
    ivf, lengths = torch.load(index / "ivf.pid.pt")
    torch.save((ivf.flip(0).contiguous(), lengths), index / "ivf.pid.pt")
    (index / "doc_ids.json").write_text(json.dumps(["a"] * 40))
    shutil.copy(index / "doclens.0.json", index / "doclens.7.json")
    problems = verify_index(index)
    assert len(problems) == 3 and any("repeated" in p for p in problems)
    assert any("ivf.pid.pt disagrees with the codes" in p for p in problems)
    assert any("doclens.7.json" in p for p in problems)
    (index / "centroids.pt").unlink()
    with pytest.raises(IndexFormatError, match="centroids.pt is missing"):
        verify_index(index, raise_on_error=True)


# ----------------------------------------------------------------------------------------------- drift


def test_drift_warns_once_and_reindex_refits_without_a_model(searcher, index):
    updater = IndexUpdater(searcher.config, searcher, drift_warning=0.2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(3):
            updater.add(texts(6, seed=50 + seed))
    drift = [w for w in caught if issubclass(w.category, DriftWarning)]
    assert len(drift) == 1 and "reindex()" in str(drift[0].message) and updater.drift > 0.2
    assert drift[0].filename == __file__  # points at the caller's line, where it can be acted on
    before = every_id(searcher)
    old_centroids = searcher.loaded.centroids.clone()
    updater.reindex()
    assert updater.drift == 0 and not updater.pending and verify_index(index) == []
    loaded = LoadedIndex.open(index)
    assert not torch.equal(loaded.centroids[: len(old_centroids)], old_centroids)
    assert every_id(searcher) == before and loaded.metadata["updates"]["fitted_embeddings"] == loaded.num_embeddings


@pytest.mark.compat
def test_a_reference_built_index_is_updated_and_stays_a_reference_index(tmp_path):
    need_shared()
    path = Path(shutil.copytree(COMPAT / "index-scifact1k-nbits2", tmp_path / "ref"))
    names = {p.name for p in path.iterdir()}
    updater = IndexUpdater(None, str(path))
    removed = updater.ids[:5]
    updater.remove(removed)
    updater.persist_to_disk()
    assert verify_index(path) == [] and {p.name for p in path.iterdir()} == names  # pids stable: no doc_ids.json
    loaded = LoadedIndex.open(path)
    assert loaded.num_passages == 1000 and loaded.num_live == 995 and loaded.doclens[:5].sum() == 0
    assert loaded.pid_of(5) == 5 and os.path.isdir(path)
    meta = json.loads((path / "metadata.json").read_text())
    assert list(meta)[:5] == ["config", "num_chunks", "num_partitions", "num_embeddings", "avg_doclen"]
    assert meta["num_embeddings"] == int(loaded.doclens.sum())


QUERIES = ["cancer therapy outcomes", "protein folding in cells", "vitamin d and bone density"]
REMOVED = [3, 17, 199]
ADDED = ["Protein folding in cancer cells.", "Therapy outcomes in a randomized trial."]


@pytest.fixture(scope="module")
def minilm_index(minilm_checkpoint, tmp_path_factory) -> Path:
    """200 SciFact passages (ids are the TSV line numbers, as colbert-ai needs) indexed here with MiniLM, nbits=2."""
    root = tmp_path_factory.mktemp("interchange")
    lines = (COMPAT / "collection-scifact1k.tsv").read_text(encoding="utf-8").splitlines()[:200]
    tsv = root / "c.tsv"
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return build(minilm_checkpoint, root, str(tsv), name="minilm")


def colbert_ai(code: str, path: Path, checkpoint: Path, tmp_path: Path):
    from test_reference_roundtrip import PYTHON, run_reference

    if not PYTHON.exists():
        pytest.skip(f"no reference venv at {PYTHON.parent.parent}: run bash ../shared/reference/setup.sh")
    head = f"""
import json
from colbert import Searcher, IndexUpdater
from colbert.infra import ColBERTConfig
config = ColBERTConfig(model_name={str(checkpoint)!r})  # the index may name another machine's checkpoint path
def searcher():
    return Searcher(index={str(path)!r}, checkpoint={str(checkpoint)!r}, collection=["x"], config=config)
def top10(s):
    return [s.search(q, k=10)[0] for q in {QUERIES!r}]
"""
    return run_reference(head + code, tmp_path)


@pytest.mark.slow
@pytest.mark.compat
def test_colbert_ai_reads_an_index_updated_here_with_the_same_ids(minilm_index, minilm_checkpoint, tmp_path):
    path = Path(shutil.copytree(minilm_index, tmp_path / "ours"))
    searcher = Searcher(str(path), checkpoint=str(minilm_checkpoint), verbose=0)
    updater = IndexUpdater(searcher.config, searcher)
    updater.remove(REMOVED)
    assert updater.add(ADDED) == [200, 201]
    updater.persist_to_disk()
    ours = [searcher.search(q, k=10)[0] for q in QUERIES]
    got = colbert_ai("print(json.dumps(top10(searcher())))", path, minilm_checkpoint, tmp_path)
    assert got == ours and any(200 in ids or 201 in ids for ids in ours)
    assert not set(REMOVED) & {pid for ids in got for pid in ids}
    # and colbert-ai can go on updating it (its add needs the unpadded IVF our persist writes)
    got = colbert_ai(f"""
s = searcher()
u = IndexUpdater(config, s, {str(minilm_checkpoint)!r})
new = u.add(["Bone density and vitamin D."])
u.persist_to_disk()
print(json.dumps({{"new": new, "top": top10(searcher())}}))""", path, minilm_checkpoint, tmp_path)
    assert got["new"] == [202]
    fresh = Searcher(str(path), checkpoint=str(minilm_checkpoint), verbose=0)
    assert [fresh.search(q, k=10)[0] for q in QUERIES] == got["top"] and verify_index(path) == []


@pytest.mark.slow
@pytest.mark.compat
def test_an_index_updated_by_colbert_ai_searches_the_same_here(minilm_index, minilm_checkpoint, tmp_path):
    path = Path(shutil.copytree(minilm_index, tmp_path / "theirs"))
    ivf, lengths = torch.load(path / "ivf.pid.pt")  # colbert-ai's add fails on the padded IVF of a fresh build
    torch.save((ivf[: int(lengths.sum())].clone(), lengths), path / "ivf.pid.pt")
    got = colbert_ai(f"""
s = searcher()
u = IndexUpdater(config, s, {str(minilm_checkpoint)!r})
u.remove({REMOVED!r})
new = u.add({ADDED!r})
u.persist_to_disk()
print(json.dumps({{"new": new, "top": top10(searcher())}}))""", path, minilm_checkpoint, tmp_path)
    assert got["new"] == [200, 201]
    meta = json.loads((path / "metadata.json").read_text())
    loaded = LoadedIndex.open(path)
    assert meta["num_embeddings"] > int(loaded.doclens.sum())  # colbert-ai's overcount, tolerated
    assert verify_index(path) == [] and loaded.doclens[REMOVED].sum() == 0 and loaded.num_live == 199
    searcher = Searcher(str(path), checkpoint=str(minilm_checkpoint), verbose=0)
    assert [searcher.search(q, k=10)[0] for q in QUERIES] == got["top"]
    updater = IndexUpdater(searcher.config, searcher)  # and we go on updating it
    assert updater.add(["Bone density and vitamin D."]) == [202]
    updater.remove([5])
    updater.persist_to_disk()
    assert verify_index(path) == [] and json.loads((path / "metadata.json").read_text())["num_embeddings"] == \
        int(LoadedIndex.open(path).doclens.sum())
