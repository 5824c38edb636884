"""The Qdrant backend: export an index or encode a collection into a multivector MAX_SIM collection, search it with
our query encoder, filter on payload, add and remove. Runs in qdrant-client's local mode (no server), and against
a real server too when QDRANT_URL is set.

Local mode scores with numpy; on a busy machine OpenBLAS' threads fight over the cores (a 32 x 128 by 128 x 150
product took 7 ms instead of 50 us), so queries run under one BLAS thread when threadpoolctl is installed.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
import torch

qdrant_client = pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (pip install "
                                                            "colbert[qdrant])")
from qdrant_client import QdrantClient, models  # noqa: E402

from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, Searcher  # noqa: E402
from colbert.backends.qdrant import VECTOR_NAME, MirroredUpdater, QdrantIndex, payload_filter, point_id  # noqa: E402
from colbert.data import Queries  # noqa: E402
from conftest import COMPAT, SCIFACT, need_shared  # noqa: E402

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
NUM_DOCS = 30
QUERIES = ["cancer therapy trial", "immune virus", "brain heart blood drug", "mouse gene", "risk patient protein"]
SCIFACT_INDEX = COMPAT / "index-scifact1k-nbits2"  # 1,000 SciFact passages, MiniLM, built by the reference
DEFAULT_QUERIES = 40  # SciFact queries checked in the default run; all 300 in the slow test


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(m),), generator=g))
            for m in torch.randint(3, 20, (n,), generator=g)]


DOCS = {f"d{i}": t for i, t in enumerate(texts(NUM_DOCS))}
META = {f"d{i}": {"year": 2000 + i, "lang": "en" if i % 3 else "fr"} for i in range(NUM_DOCS)}


def one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


@pytest.fixture(params=["local", "server"])
def client(request):
    if request.param == "local":
        yield QdrantClient(":memory:")
        return
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: the same tests run against a real Qdrant server when it is")
    yield QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))


@pytest.fixture
def name(client):
    name = f"colbert-test-{uuid.uuid4().hex[:12]}"
    yield name
    if client.collection_exists(name):
        client.delete_collection(name)


@pytest.fixture(scope="module")
def tiny_index(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qdrant")
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="test")):
        indexer = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0)
        return Path(indexer.index("docs", DOCS, metadata=META))


@pytest.fixture(scope="module")
def searcher(tiny_index) -> Searcher:
    return Searcher(str(tiny_index), verbose=0)


def test_point_ids_are_uuids_that_keep_int_and_str_apart():
    assert str(uuid.UUID(point_id("d1"))) == point_id("d1")
    assert point_id(1) != point_id("1") and point_id("d1") != point_id("d2")
    with pytest.raises((TypeError, ValueError)):
        point_id(1.5)


def test_dict_filters_become_payload_conditions():
    f = payload_filter({"year": 2019, "lang": ["en", "fr"]})
    assert [c.key for c in f.must] == ["metadata.year", "metadata.lang"]
    assert isinstance(f.must[0].match, models.MatchValue) and isinstance(f.must[1].match, models.MatchAny)
    with pytest.raises(TypeError, match="Filter or a dict"):
        payload_filter("year")


def test_exported_index_searches_like_exact_search(client, name, searcher, tiny_index):
    store = QdrantIndex.from_index(tiny_index, client, name, checkpoint=searcher.checkpoint)
    assert len(store) == NUM_DOCS
    info = client.get_collection(name).config.params.vectors[VECTOR_NAME]
    assert info.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM and info.size == 16
    with one_blas_thread():
        for query in QUERIES:
            ids, ranks, scores = store.search(query, k=10)
            expected = searcher.search(query, k=10, exact=True)
            assert ids == expected[0] and ranks == expected[1]
            assert scores == pytest.approx(expected[2], abs=1e-4)
    assert store.document("d4") == {"id": "d4", "text": DOCS["d4"], "metadata": META["d4"]}  # string ids kept


def test_payload_filters_apply_before_scoring(client, name, searcher, tiny_index):
    store = QdrantIndex.from_index(tiny_index, client, name, checkpoint=searcher.checkpoint)
    query = QUERIES[0]
    french = [i for i in searcher.search(query, k=NUM_DOCS, exact=True)[0] if META[i]["lang"] == "fr"]
    with one_blas_thread():
        assert store.search(query, k=4, filter={"lang": "fr"})[0] == french[:4]
        late = models.Filter(must=[models.FieldCondition(key="metadata.year", range=models.Range(gte=2027))])
        assert sorted(store.search(query, k=10, filter=late)[0]) == ["d27", "d28", "d29"]


def test_add_and_remove_are_mirrored(client, name, searcher, tiny_index):
    store = QdrantIndex.from_index(tiny_index, client, name, checkpoint=searcher.checkpoint)
    assert store.add({"new-1": "cancer therapy trial cancer"}, metadata={"new-1": {"lang": "de"}}) == ["new-1"]
    assert store.add(["mouse gene"], ids=[77]) == [77]
    store.remove(["d0", "d1"])
    assert len(store) == NUM_DOCS
    with one_blas_thread():
        ids, _, scores = store.search(QUERIES[0], k=NUM_DOCS)
        assert "new-1" in ids and 77 in ids and "d0" not in ids and "d1" not in ids
        assert store.search(QUERIES[0], k=5, filter={"lang": "de"})[0] == ["new-1"]
    Q = searcher.encode(QUERIES[0])[0]
    expected = searcher.checkpoint.rerank(Q, ["cancer therapy trial cancer"], k=1)[0][1]  # unquantised MaxSim
    assert scores[ids.index("new-1")] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="already in the Qdrant collection"):
        store.add({"d2": "again"})
    with pytest.raises(ValueError, match="not in the Qdrant collection"):
        store.remove(["d2", "nope"])
    assert len(store) == NUM_DOCS  # nothing half done
    with pytest.raises(TypeError, match="needs ids="):
        store.add(["no id"])


def test_index_updater_edits_are_mirrored_to_qdrant(client, name, tiny_index, tmp_path):
    import shutil

    index = Path(shutil.copytree(tiny_index, tmp_path / "copy"))
    searcher = Searcher(str(index), verbose=0)
    store = QdrantIndex.from_index(index, client, name, checkpoint=searcher.checkpoint)
    mirrored = MirroredUpdater(IndexUpdater(config=searcher.config, searcher=searcher), store)
    assert mirrored.add({"new-1": "cancer therapy trial cancer"}, metadata={"new-1": {"lang": "de"}}) == ["new-1"]
    mirrored.remove(["d0", "d3"])
    with pytest.raises(ValueError):
        mirrored.remove(["nope"])
    with pytest.raises(ValueError, match="already in the Qdrant collection"):
        mirrored.add({"d5": "again"})
    assert len(store) == len(searcher.loaded.live_ids) == NUM_DOCS - 1
    with one_blas_thread():
        for query in QUERIES:
            ids, _, scores = store.search(query, k=10)
            expected = searcher.search(query, k=10, exact=True)  # the searcher sees the edits at once
            assert ids == expected[0] and scores == pytest.approx(expected[2], abs=1e-4)
    assert store.document("new-1")["metadata"] == {"lang": "de"}
    mirrored.persist_to_disk()
    assert Searcher(str(index), verbose=0).document("new-1")["metadata"] == {"lang": "de"}


def test_encoding_a_collection_straight_into_qdrant(client, name, _tiny_checkpoint_master):
    from colbert.modeling.checkpoint import Checkpoint

    checkpoint = Checkpoint(str(_tiny_checkpoint_master), verbose=0)
    store = QdrantIndex.from_collection(DOCS, checkpoint, client, name, metadata=META,
                                        quantization_config=models.ScalarQuantization(
                                            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8)))
    info = client.get_collection(name).config.params.vectors[VECTOR_NAME]
    assert isinstance(info.quantization_config, models.ScalarQuantization)  # passed through
    texts_ = list(DOCS.values())
    with one_blas_thread():
        for query in QUERIES[:3]:
            ids, _, scores = store.search(query, k=5)
            best = checkpoint.rerank(query, texts_, k=5)  # brute-force MaxSim on the same embeddings
            assert ids == [f"d{i}" for i, _ in best]
            assert scores == pytest.approx([s for _, s in best], abs=1e-4)


def test_an_existing_collection_is_not_replaced_unless_asked(client, name, searcher, tiny_index):
    QdrantIndex.from_index(tiny_index, client, name, checkpoint=searcher.checkpoint)
    with pytest.raises(ValueError, match="recreate=True"):
        QdrantIndex.from_index(tiny_index, client, name, checkpoint=searcher.checkpoint)
    QdrantIndex.from_index(tiny_index, client, name, checkpoint=searcher.checkpoint, recreate=True)
    with pytest.raises(ValueError, match="no collection"):
        QdrantIndex(client, name + "-missing", searcher.checkpoint)


# --------------------------------------------------------------------------------------------------- SciFact


def agreement_on_scifact(client, name, minilm_checkpoint, num_queries: int) -> float:
    need_shared()
    searcher = Searcher(str(SCIFACT_INDEX), checkpoint=str(minilm_checkpoint), verbose=0)
    store = QdrantIndex.from_index(SCIFACT_INDEX, client, name, checkpoint=searcher.checkpoint,
                                   collection=COMPAT / "collection-scifact1k.tsv")
    queries = list(Queries(path=SCIFACT / "queries.tsv").values())[:num_queries]
    encoded = searcher.encode(queries)  # (n, 32, 128), shared by both
    same = 0
    with one_blas_thread():
        for Q in encoded:
            same += store.dense_search(Q, k=10)[0] == searcher.dense_search(Q, k=10, exact=True)[0]
    return same / len(queries)


def test_scifact_top10_equals_exact_search(client, name, minilm_checkpoint):
    assert agreement_on_scifact(client, name, minilm_checkpoint, DEFAULT_QUERIES) >= 0.99


@pytest.mark.slow
def test_scifact_top10_equals_exact_search_on_300_queries(client, name, minilm_checkpoint):
    assert agreement_on_scifact(client, name, minilm_checkpoint, 300) >= 0.99
