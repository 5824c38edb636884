"""Searcher, PLAID and exact search on a tiny index built with the tiny checkpoint (string ids), plus bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher, kernels
from colbert.data import Ranking
from colbert.errors import CheckpointError, IndexFormatError
from colbert.index import format as index_format
from colbert.search import plaid
from colbert.search.params import SearchParams, check_k, search_params
from conftest import COMPAT, need_shared

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
NUM_DOCS = 48


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(n_words),), generator=g))
            for n_words in torch.randint(3, 30, (n,), generator=g)]


QUERIES = {"qa": "cancer therapy trial", "qb": "immune virus", "qc": "brain heart blood drug", "qd": "mouse gene",
           "qe": "risk patient protein cell"}


@pytest.fixture(scope="module")
def tiny_index(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("search")
    collection = {f"doc-{i}": text for i, text in enumerate(texts(NUM_DOCS))}
    with Run().context(RunConfig(root=str(root), experiment="test")):
        indexer = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0)
        return Path(indexer.index("tiny", collection))


@pytest.fixture(scope="module")
def searcher(tiny_index) -> Searcher:
    return Searcher(str(tiny_index), verbose=0)  # the checkpoint comes from the index


def copy_index(tiny_index: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_index, tmp_path / "copy"))


# --------------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("k, expected", [(1, (1, 0.5, 256)), (10, (1, 0.5, 256)), (11, (2, 0.45, 1024)),
                                         (100, (2, 0.45, 1024)), (101, (4, 0.4, 4096)), (2000, (4, 0.4, 8000))])
def test_search_params_follow_k(k, expected):
    assert search_params(k, ColBERTConfig()) == SearchParams(*expected)


def test_search_params_prefer_the_config_and_do_not_write_back():
    config = ColBERTConfig(ndocs=64, centroid_score_threshold=0.1)
    assert search_params(500, config) == SearchParams(4, 0.1, 64)
    assert config.ncells is None and "ncells" not in config.assigned


@pytest.mark.parametrize("field, value", [("ncells", 0), ("ndocs", 3), ("ndocs", 8.5), ("centroid_score_threshold",
                                                                                          "high")])
def test_search_params_reject_bad_config_values(field, value):
    with pytest.raises((TypeError, ValueError), match=field):  # the config refuses them when they are set
        search_params(10, ColBERTConfig(**{field: value}))


@pytest.mark.parametrize("k, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError),
                                      ("10", TypeError), (None, TypeError)])
def test_k_must_be_a_positive_int(searcher, k, error):
    with pytest.raises(error, match="k must be a positive int"):
        check_k(k)
    with pytest.raises(error, match="k must be a positive int"):
        searcher.search("cancer", k=k)


def test_each_call_gets_the_params_of_its_own_k(searcher, monkeypatch):
    seen = []
    original = plaid.plaid_search
    monkeypatch.setattr(plaid, "plaid_search", lambda index, Q, params, k, **kw: seen.append(params) or original(
        index, Q, params, k, **kw))
    searcher.search("cancer", k=10)
    searcher.search("cancer", k=100)
    assert seen == [SearchParams(1, 0.5, 256), SearchParams(2, 0.45, 1024)]
    assert searcher.config.ncells is None and searcher.config.ndocs is None


# ------------------------------------------------------------------------------------------------------- search


def test_search_returns_the_users_ids_ranks_and_scores(searcher):
    ids, ranks, scores = searcher.search("cancer therapy trial", k=5)
    assert len(ids) == 5 and all(isinstance(i, str) and i.startswith("doc-") for i in ids)
    assert ranks == [1, 2, 3, 4, 5]
    assert scores == sorted(scores, reverse=True)


def test_exact_mode_equals_brute_force_maxsim(searcher):
    index = searcher.loaded
    Q = searcher.encode("immune virus")[0]
    codes, packed, lengths = index.lookup(torch.arange(NUM_DOCS))
    D = kernels.decompress_residuals(codes, packed, index.centroids, index.bucket_weights, index.nbits)
    brute = torch.stack([(d @ Q.T).amax(dim=0).sum() for d in D.split(lengths.tolist())])  # (P,)
    ids, _, scores = searcher.search("immune virus", k=NUM_DOCS, exact=True)
    assert ids == [index.id_of(p) for p in brute.argsort(descending=True, stable=True).tolist()]
    torch.testing.assert_close(torch.tensor(scores), brute.sort(descending=True).values, atol=1e-5, rtol=0)


def test_search_reads_the_loaded_index_itself_on_the_cpu(searcher, tiny_index):
    snap = searcher.index_handle.snapshot()
    index = snap.loaded
    assert snap.view is index and searcher.ranker is index  # one in-memory shape, no second copy on the CPU
    stored = index_format.read_codec(tiny_index, index.dim, index.nbits, index.num_partitions)
    assert stored.centroids.dtype == torch.float16  # on disk
    assert index.codec.centroids.dtype == torch.float32 and torch.equal(index.centroids, stored.centroids.float())
    assert index.live is None  # nothing removed


def test_to_moves_what_search_reads_and_keeps_the_bookkeeping(searcher):
    index = searcher.loaded
    moved = index.to("meta")  # a device without a GPU: shapes and placement only
    assert moved.device.type == "meta" and index.device.type == "cpu"
    for name in ("centroids", "bucket_weights", "ivf", "ivf_offsets", "doc_offsets", "codes"):
        assert getattr(moved, name).device.type == "meta" and getattr(moved, name).shape == getattr(index, name).shape
    assert moved.residual_chunks[0].device.type == "meta" and moved.doclens is index.doclens
    assert moved.doc_ids is index.doc_ids and moved.pid_of("doc-3") == index.pid_of("doc-3")


def test_exact_mode_in_small_blocks_equals_one_block(searcher, monkeypatch):
    whole = searcher.search("brain heart", k=7, exact=True)
    monkeypatch.setattr(plaid, "EXACT_BLOCK_TOKENS", 40)  # a few documents per block
    blocked = searcher.search("brain heart", k=7, exact=True)
    assert blocked[:2] == whole[:2] and blocked[2] == pytest.approx(whole[2])
    ranking = searcher.search_all(QUERIES, k=7, exact=True)  # several queries share each block
    assert [row[0] for row in ranking["qa"]] == searcher.search(QUERIES["qa"], k=7, exact=True)[0]


def test_plaid_probing_everything_equals_exact(searcher):
    config = ColBERTConfig(ncells=searcher.loaded.num_partitions, centroid_score_threshold=-100.0, ndocs=4 * NUM_DOCS)
    wide = Searcher(searcher.index, config=config, verbose=0)
    for text in QUERIES.values():
        ids, _, scores = wide.search(text, k=10)
        exact_ids, _, exact_scores = searcher.search(text, k=10, exact=True)
        assert ids == exact_ids
        assert scores == pytest.approx(exact_scores, abs=1e-5)


def test_empty_and_long_queries(searcher):
    assert len(searcher.search("", k=3)[0]) == 3  # encodes as [CLS] [Q] [SEP] + [MASK]s, as in the reference
    long = " ".join(WORDS * 4)
    assert searcher.encode(long).shape == (1, searcher.config.query_maxlen, 16)  # truncated
    assert searcher.encode(long, full_length_search=True).shape[1] > searcher.config.query_maxlen
    assert len(searcher.search(long, k=3, full_length_search=True)[0]) == 3


def test_k_above_the_collection_returns_every_document_once(searcher):
    ids, ranks, _ = searcher.search("cell", k=1000, exact=True)
    assert sorted(ids) == sorted(f"doc-{i}" for i in range(NUM_DOCS)) and ranks[-1] == NUM_DOCS


# ---------------------------------------------------------------------------------------------------- filtering


def test_allow_list_restricts_and_scores_before_the_cut(searcher):
    allowed = [f"doc-{i}" for i in range(0, NUM_DOCS, 3)]
    ids, _, scores = searcher.search("cancer therapy", k=5, pids=allowed)
    exact_ids, _, exact_scores = searcher.search("cancer therapy", k=NUM_DOCS, exact=True)
    expected = [(i, s) for i, s in zip(exact_ids, exact_scores) if i in allowed][:5]
    assert ids == [i for i, _ in expected]
    assert scores == pytest.approx([s for _, s in expected], abs=1e-5)
    assert searcher.search("cancer therapy", k=5, pids=[]) == ([], [], [])


def test_allow_list_with_unknown_ids_raises(searcher):
    with pytest.raises(ValueError, match="'doc-999'"):
        searcher.search("cancer", k=5, pids=["doc-1", "doc-999"])
    with pytest.raises(ValueError, match="not documents"):
        searcher.search("cancer", k=5, pids=[3])  # positions are not ids when the index has string ids
    with pytest.raises(TypeError, match="single str"):
        searcher.search("cancer", k=5, pids="doc-1")


@pytest.mark.parametrize("exact", [False, True])
def test_filter_fn_keeps_only_what_it_returns(searcher, exact):
    def even(pids: torch.Tensor) -> torch.Tensor:
        return pids[pids % 2 == 0]

    ids, _, _ = searcher.search("cancer therapy", k=5, filter_fn=even, exact=exact)
    assert ids and all(searcher.loaded.pid_of(i) % 2 == 0 for i in ids)
    mask_ids, _, _ = searcher.search("cancer therapy", k=5, filter_fn=lambda p: p % 2 == 0, exact=exact)
    assert mask_ids == ids  # a bool mask over the candidates works too
    assert searcher.search("cancer", k=5, filter_fn=lambda p: p[:0], exact=exact) == ([], [], [])


def test_filter_fn_and_allow_list_combine(searcher):
    allowed = [f"doc-{i}" for i in range(10)]
    ids, _, _ = searcher.search("cancer", k=10, pids=allowed, filter_fn=lambda p: p[p >= 5])
    assert sorted(ids) == sorted(f"doc-{i}" for i in range(5, 10))


@pytest.mark.parametrize("bad, error", [(lambda p: p.tolist(), TypeError), (lambda p: p.float(), TypeError),
                                        (lambda p: p + 10_000, ValueError)])
def test_filter_fn_returning_garbage_raises(searcher, bad, error):
    with pytest.raises(error, match="filter_fn"):
        searcher.search("cancer", k=5, filter_fn=bad)


# --------------------------------------------------------------------------------------------------- search_all


def test_search_all_equals_search_and_round_trips(searcher, monkeypatch, tmp_path):
    monkeypatch.setattr("colbert.searcher.SEARCH_ALL_BATCH", 2)  # three batches
    ranking = searcher.search_all(QUERIES, k=4)
    assert isinstance(ranking, Ranking) and list(ranking.todict()) == list(QUERIES)
    for qid, text in QUERIES.items():
        ids, ranks, scores = searcher.search(text, k=4)
        assert [(row[0], row[1]) for row in ranking[qid]] == list(zip(ids, ranks))
        assert [row[2] for row in ranking[qid]] == pytest.approx(scores, abs=1e-5)
    path = ranking.save(tmp_path / "run.tsv")
    assert (tmp_path / "run.tsv").read_text().splitlines()[0].split("\t")[:3] == ["qa", ranking["qa"][0][0], "1"]
    assert [tuple(row) for row in Ranking.load(path).tolist()] == ranking.tolist()


def test_search_all_with_per_query_allow_lists(searcher):
    qid_to_pids = {qid: [f"doc-{i}", f"doc-{i + 1}"] for i, qid in enumerate(QUERIES)}
    ranking = searcher.search_all(QUERIES, k=10, qid_to_pids=qid_to_pids)
    for qid, rows in ranking.items():
        assert sorted(row[0] for row in rows) == sorted(qid_to_pids[qid])
    with pytest.raises(ValueError, match="qid_to_pids has no entry"):
        searcher.search_all(QUERIES, k=10, qid_to_pids={"qa": ["doc-1"]})


def test_search_all_takes_a_list_and_full_length_search(searcher):
    ranking = searcher.search_all(list(QUERIES.values()), k=3, full_length_search=True)
    assert list(ranking.todict()) == list(range(len(QUERIES)))
    assert [row[0] for row in ranking[0]] == searcher.search(QUERIES["qa"], k=3, full_length_search=True)[0]


# ------------------------------------------------------------------------------------------------- bad input


def test_bad_queries(searcher):
    with pytest.raises(TypeError, match="search_all"):
        searcher.search(["two", "queries"], k=3)
    with pytest.raises(TypeError):
        searcher.search(None, k=3)
    with pytest.raises(ValueError, match=r"\(Lq, 16\)"):
        searcher.dense_search(torch.zeros(2, 32, 16))
    with pytest.raises(ValueError, match=r"\(Lq, 16\)"):
        searcher.dense_search(torch.zeros(32, 128))
    with pytest.raises(TypeError, match="torch.Tensor"):
        searcher.dense_search([[0.0] * 16])


def test_index_by_name_under_the_runs_root_or_by_path(tiny_index, searcher):
    root = tiny_index.parents[2]  # root/experiment/indexes/name
    with Run().context(RunConfig(root=str(root), experiment="test")):
        by_name = Searcher("tiny", verbose=0)
    assert by_name.index == str(tiny_index)
    assert Searcher("tiny", index_root=str(tiny_index.parent), verbose=0).search("gene", k=3) == searcher.search(
        "gene", k=3)
    with pytest.raises(FileNotFoundError, match="Indexer.index"):
        Searcher("no-such-index", index_root=str(tiny_index.parent), verbose=0)


def test_broken_index_raises_naming_the_file(tiny_index, tmp_path):
    broken = copy_index(tiny_index, tmp_path)
    (broken / "ivf.pid.pt").write_bytes((broken / "ivf.pid.pt").read_bytes()[:50])
    with pytest.raises(IndexFormatError, match="ivf.pid.pt"):
        Searcher(str(broken), verbose=0)


def test_missing_checkpoint_of_the_index_asks_for_checkpoint(tiny_index, tmp_path):
    moved = copy_index(tiny_index, tmp_path)
    meta = json.loads((moved / "metadata.json").read_text())
    meta["config"]["checkpoint"] = "/nowhere/ckpt-minilm-colbert"
    (moved / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="checkpoint="):
        Searcher(str(moved), verbose=0)


def test_checkpoint_of_another_dim_is_refused(_tiny_checkpoint_master):
    need_shared()
    with pytest.raises(CheckpointError, match="16-dim .* 128-dim"):
        Searcher(str(COMPAT / "index-scifact1k-nbits2"), checkpoint=str(_tiny_checkpoint_master), verbose=0)


def test_in_ram_by_default_and_mmap_on_request(searcher):
    """Read into memory by default, as the reference (files changed in place cannot hurt it: docs/data.md)."""
    assert searcher.config.load_index_with_mmap is False
    mapped = Searcher(searcher.index, config=ColBERTConfig(load_index_with_mmap=True), verbose=0)
    assert mapped.config.load_index_with_mmap is True
    assert mapped.search("virus", k=5) == searcher.search("virus", k=5)


def test_an_index_in_two_chunks_searches_like_one(tiny_index, searcher, tmp_path):
    nbits, dim = searcher.loaded.nbits, searcher.loaded.dim
    chunk = index_format.read_chunk(tiny_index, 0, dim, nbits)
    split, split_emb = NUM_DOCS // 2, int(chunk.doclens[:NUM_DOCS // 2].sum())
    for k, (pids, embs) in enumerate([(slice(0, split), slice(0, split_emb)), (slice(split, None),
                                                                               slice(split_emb, None))]):
        index_format.write_chunk(tmp_path, k, chunk.codes[embs], chunk.residuals[embs], chunk.doclens[pids],
                                 passage_offset=pids.start)
    index_format.write_embedding_offsets(tmp_path, 2)
    for name in ("centroids.pt", "buckets.pt", "avg_residual.pt", "ivf.pid.pt", "doc_ids.json", "plan.json"):
        shutil.copy(tiny_index / name, tmp_path / name)
    index_format.write_metadata(tmp_path, {**index_format.read_metadata(tiny_index), "num_chunks": 2})
    two = Searcher(str(tmp_path), config=ColBERTConfig(load_index_with_mmap=True), verbose=0)
    assert len(two.loaded.residual_chunks) == 2
    for text in QUERIES.values():
        assert two.search(text, k=8) == searcher.search(text, k=8)
        assert two.search(text, k=8, exact=True) == searcher.search(text, k=8, exact=True)
    with pytest.raises(ValueError, match="mmap=False"):  # a GPU gathers from one residual tensor
        two.loaded.to("meta")


def test_exact_search_all_with_full_length_queries(searcher):
    queries = {"short": "gene", "long": " ".join(WORDS * 3)}
    ranking = searcher.search_all(queries, k=3, full_length_search=True, exact=True)
    for qid, text in queries.items():
        assert [row[0] for row in ranking[qid]] == searcher.search(text, k=3, full_length_search=True, exact=True)[0]
