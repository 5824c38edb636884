"""colbert.server in process (FastAPI's TestClient, lifespan included): every endpoint against the library's own
answers, auth, every limit, malformed and mistyped bodies, unknown and path-like index names, writes and the
single-writer rule, metrics. Tiny random model; an index of 40 passages built once and copied per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'colbert-ai[server]'")
pytest.importorskip("prometheus_client", reason="the server extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher  # noqa: E402
from colbert.server import IndexSpec, ServerConfig, create_app, parse_index_spec  # noqa: E402
from colbert.server.config import is_loopback  # noqa: E402
from conftest import ROOT  # noqa: E402

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
READ, WRITE = "read-key-123", "write-key-456"


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(n_words),), generator=g))
            for n_words in torch.randint(3, 30, (n,), generator=g)]


DOCS = {f"d{i}": t for i, t in enumerate(texts(40))}


@pytest.fixture(scope="module")
def master(_tiny_checkpoint_master, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("server")
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="test")):
        index = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0).index(
            "docs", DOCS, overwrite=True)
    collection = root / "docs.tsv"
    collection.write_text("".join(f"{k}\t{v}\n" for k, v in DOCS.items()))
    return {"index": Path(index), "collection": collection}


@pytest.fixture
def index(master, tmp_path) -> Path:
    return Path(shutil.copytree(master["index"], tmp_path / "indexes" / "docs"))


def started(app) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    deadline = time.monotonic() + 120
    while client.get("/ready", headers=auth(READ)).status_code != 200:
        assert time.monotonic() < deadline, client.get("/ready", headers=auth(READ)).json()
        time.sleep(0.05)
    return client


@pytest.fixture
def make_client(index, master):
    clients = []

    def make(**overrides) -> TestClient:
        config = ServerConfig(indexes=[IndexSpec("docs", index, master["collection"])], **overrides)
        clients.append(started(create_app(config)))
        return clients[-1]

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client(rerank_precision="fp32")


@pytest.fixture
def searcher(index) -> Searcher:
    return Searcher(str(index), verbose=0)


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["message"] and "Traceback" not in response.text
    if field is not None:
        assert body.get("field") == field, body
    return body


# --------------------------------------------------------------------------------------------------- reads


def test_search_answers_as_the_searcher_does(client, searcher):
    body = client.post("/v1/search", json={"query": "protein cell", "k": 5}).json()
    ids, ranks, scores = searcher.search("protein cell", k=5)
    assert [h["doc_id"] for h in body["results"]] == ids
    assert [h["rank"] for h in body["results"]] == ranks == [1, 2, 3, 4, 5]
    assert [h["score"] for h in body["results"]] == pytest.approx(scores, abs=1e-4)
    assert body["index"] == "docs" and body["documents"] == 40


def test_batched_queries_answer_each_in_order(client, searcher):
    queries = ["protein cell", "brain heart", "drug trial risk"]
    body = client.post("/v1/search", json={"queries": queries, "k": 3}).json()
    assert len(body["results"]) == 3
    for query, hits in zip(queries, body["results"]):
        assert [h["doc_id"] for h in hits] == searcher.search(query, k=3)[0]


def test_search_among_doc_ids_and_with_text(client, searcher):
    body = client.post("/v1/search", json={"query": "gene", "k": 10, "doc_ids": ["d3", "d7", "d7", "d11"],
                                           "include_text": True}).json()
    assert {h["doc_id"] for h in body["results"]} == {"d3", "d7", "d11"}
    assert [h["doc_id"] for h in body["results"]] == searcher.search("gene", k=10, pids=["d3", "d7", "d11"])[0]
    assert all(h["text"] == DOCS[h["doc_id"]] for h in body["results"])
    error(client.post("/v1/search", json={"query": "gene", "doc_ids": ["d3", "nope"]}), 422, "doc_ids")


def test_search_with_diversity_is_the_searchers_mmr(client, searcher):
    for diversity in (0.0, 0.5, 1.0):
        body = client.post("/v1/search", json={"query": "virus protein cell", "k": 5, "diversity": diversity}).json()
        ids, _, scores = searcher.search("virus protein cell", k=5, diversity=diversity)
        assert [h["doc_id"] for h in body["results"]] == ids
        assert [h["score"] for h in body["results"]] == pytest.approx(scores, abs=1e-4)
    error(client.post("/v1/search", json={"query": "x", "diversity": 1.5}), 422, "diversity")
    error(client.post("/v1/search", json={"query": "x", "diversity": "high"}), 422, "diversity")


def test_rerank_texts_gives_positions_and_the_checkpoints_scores(client, searcher):
    documents = ["protein cell gene", "heart", "virus virus immune", "cell"]
    body = client.post("/v1/rerank", json={"query": "protein cell", "documents": documents, "k": 3}).json()
    expected = searcher.checkpoint.rerank("protein cell", documents, k=3)
    assert [h["index"] for h in body["results"]] == [i for i, _ in expected]
    assert [h["score"] for h in body["results"]] == pytest.approx([s for _, s in expected], abs=1e-3)
    assert [h["rank"] for h in body["results"]] == [1, 2, 3] and body["precision"] == "fp32"


def test_rerank_in_bf16_stays_close_to_fp32(make_client, searcher):
    client = make_client(rerank_precision="bf16")
    documents = texts(12, seed=3)
    body = client.post("/v1/rerank", json={"query": "protein cell", "documents": documents, "k": 12}).json()
    assert body["precision"] == "bf16"
    exact = dict(searcher.checkpoint.rerank("protein cell", documents, k=12))
    for hit in body["results"]:
        assert hit["score"] == pytest.approx(exact[hit["index"]], rel=0.02)


def test_rerank_doc_ids_scores_stored_embeddings_without_encoding_them(client, searcher, monkeypatch):
    from colbert.indexing import encoder
    from colbert.modeling.checkpoint import Checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("documents were encoded")

    monkeypatch.setattr(encoder, "encode_passages", refuse)
    monkeypatch.setattr(Checkpoint, "docFromText", refuse)
    ids = ["d1", "d5", "d9", "d30"]
    body = client.post("/v1/rerank", json={"query": "brain drug", "doc_ids": ids, "k": 4,
                                           "include_text": True}).json()
    top, _, scores = searcher.search("brain drug", k=4, pids=ids)  # exact MaxSim over the same decompressed rows
    assert [h["doc_id"] for h in body["results"]] == top
    assert [h["score"] for h in body["results"]] == pytest.approx(scores, abs=1e-4)
    assert body["results"][0]["text"] == DOCS[top[0]]
    error(client.post("/v1/rerank", json={"query": "x", "doc_ids": ["zzz"]}), 422, "doc_ids")
    error(client.post("/v1/rerank", json={"query": "x"}), 422, "documents")


def test_rerank_doc_ids_scores_equal_maxsim_over_the_decompressed_embeddings(client, searcher):
    from colbert.kernels import reference

    ids = ["d0", "d4", "d8", "d15", "d16", "d23", "d38"]
    body = client.post("/v1/rerank", json={"query": "immune virus", "doc_ids": ids, "k": len(ids)}).json()
    Q = searcher.encode("immune virus")[0]  # (Lq, d)
    ranker, index = searcher.ranker, searcher.loaded
    exact = {}
    for doc_id in ids:  # the plain-PyTorch decoder and MaxSim, one document at a time: the oracle
        codes, packed, _ = index.lookup(torch.tensor([index.pid_of(doc_id)]))
        D = reference.decompress_residuals(codes, packed, ranker.centroids, ranker.bucket_weights, index.nbits)
        exact[doc_id] = float((Q @ D.T).max(dim=1).values.sum())
    assert [h["doc_id"] for h in body["results"]] == sorted(ids, key=lambda i: -exact[i])
    for hit in body["results"]:
        assert hit["score"] == pytest.approx(exact[hit["doc_id"]], abs=1e-4)


def test_answers_carry_their_stages_in_server_timing(client):
    search = client.post("/v1/search", json={"query": "protein cell", "k": 3})
    rerank = client.post("/v1/rerank", json={"query": "brain", "doc_ids": ["d1", "d2"]})
    for response, stages in ((search, {"queue", "encode", "search", "total"}),
                             (rerank, {"queue", "encode", "score", "total"})):
        timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
        assert set(timing) == stages, timing
        assert all(float(ms) >= 0 for ms in timing.values())
        assert float(timing["total"]) >= float(timing["encode"])


def test_a_lone_request_does_not_wait_for_the_batch_window(make_client):
    client = make_client(batch_window_ms=5000)  # waited only while other requests are in flight
    started_at = time.perf_counter()
    response = client.post("/v1/rerank", json={"query": "brain", "doc_ids": ["d1", "d2"]})
    assert response.status_code == 200 and time.perf_counter() - started_at < 4
    timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert float(timing["queue"]) < 4000


def test_a_request_as_soon_as_the_index_is_ready_is_answered(make_client, monkeypatch):
    # ready turns true inside load(), on the model thread, before the loading coroutine resumes: a request in that
    # moment must find everything it needs (it once found no query batcher and got a 500)
    from colbert.server.indexes import ServedIndex

    load = ServedIndex.load

    def slow_to_return(self, checkpoint, bf16_queries=False):
        load(self, checkpoint, bf16_queries)
        time.sleep(1.0)  # the index is ready; the coroutine that started the load has not resumed yet

    monkeypatch.setattr(ServedIndex, "load", slow_to_return)
    client = make_client()
    response = client.post("/v1/rerank", json={"query": "brain", "doc_ids": ["d1", "d2"]})
    assert response.status_code == 200, response.text


def test_queries_in_bf16_stay_close_to_fp32(make_client, searcher):
    client = make_client(query_precision="bf16", rerank_precision="bf16")
    checkpoint = client.app.state.service.registry.indexes["docs"].searcher.checkpoint
    assert "_bf16_query" in checkpoint.__dict__  # built while loading, before the first request
    ids = [f"d{i}" for i in range(0, 40, 3)]
    body = client.post("/v1/rerank", json={"query": "protein cell gene", "doc_ids": ids, "k": len(ids)}).json()
    assert body["precision"] == "bf16"
    exact = dict(zip(*searcher.search("protein cell gene", k=len(ids), pids=ids)[::2]))  # fp32 queries
    assert {h["doc_id"] for h in body["results"]} == set(exact)
    for hit in body["results"]:
        assert hit["score"] == pytest.approx(exact[hit["doc_id"]], rel=0.02)
    hits = client.post("/v1/search", json={"query": "protein cell", "k": 40}).json()["results"]
    exact = dict(zip(*searcher.search("protein cell", k=40)[::2]))
    assert len(hits) == len(exact)
    for hit in hits:
        if hit["doc_id"] in exact:  # near ties at the bottom may swap in or out
            assert hit["score"] == pytest.approx(exact[hit["doc_id"]], rel=0.02)
    with pytest.raises(ValueError, match="query_precision"):
        ServerConfig(indexes=[], query_precision="fp16")


def test_rerank_queries_follow_the_rerank_precision(make_client):
    service = make_client(rerank_precision="fp32", query_precision="bf16").app.state.service
    assert service.rerank_batchers["docs"] is not service.batchers["docs"]  # a batcher per precision
    service = make_client(rerank_precision="fp32").app.state.service
    assert service.rerank_batchers["docs"] is service.batchers["docs"]
    checkpoint = service.registry.indexes["docs"].searcher.checkpoint
    assert "_bf16_query" not in checkpoint.__dict__  # nothing asked for bf16: no bf16 copy of the weights


def test_an_onnx_export_serves_the_same_answers_and_takes_writes(make_client, searcher, _tiny_checkpoint_master,
                                                                  tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install colbert-ai[onnx])")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install colbert-ai[onnx])")
    from colbert.export.onnx import export_onnx

    exported = export_onnx(str(_tiny_checkpoint_master), tmp_path / "onnx", quantize=False)
    client = make_client(checkpoint=str(exported))  # queries and added documents encoded by onnxruntime
    ids = [f"d{i}" for i in range(0, 40, 4)]
    body = client.post("/v1/rerank", json={"query": "cancer therapy", "doc_ids": ids, "k": 5}).json()
    top, _, scores = searcher.search("cancer therapy", k=5, pids=ids)  # torch-encoded query
    assert [h["doc_id"] for h in body["results"]] == top
    assert [h["score"] for h in body["results"]] == pytest.approx(scores, abs=1e-3)
    assert body["precision"] == "fp32"  # onnxruntime's own, whatever the rerank precision asks
    hits = client.post("/v1/search", json={"query": "brain blood", "k": 5}).json()["results"]
    assert [h["doc_id"] for h in hits] == searcher.search("brain blood", k=5)[0]
    added = client.post("/v1/documents", json={"documents": {"o1": "virus virus immune"}})
    assert added.status_code == 200 and added.json()["documents"] == 41, added.text


def test_encode_queries_and_documents(client, searcher):
    body = client.post("/v1/encode", json={"texts": ["protein cell", "gene"], "kind": "query"}).json()
    Q = searcher.encode(["protein cell", "gene"])
    assert body["dim"] == 16 and body["lengths"] == [Q.size(1)] * 2
    torch.testing.assert_close(torch.tensor(body["embeddings"]), Q, atol=1e-5, rtol=0)
    body = client.post("/v1/encode", json={"texts": ["protein cell gene", "x"], "kind": "document"}).json()
    D = searcher.checkpoint.docFromText(["protein cell gene", "x"], keep_dims=False)
    assert body["lengths"] == [d.size(0) for d in D]
    torch.testing.assert_close(torch.tensor(body["embeddings"][0]), D[0], atol=1e-5, rtol=0)
    error(client.post("/v1/encode", json={"texts": ["x"], "kind": "passage"}), 422, "kind")


# -------------------------------------------------------------------------------------------------- writes


def test_added_and_removed_documents_are_committed_and_searchable(client, index):
    new = {"n1": "mouse mouse mouse brain", "n2": "therapy trial"}
    body = client.post("/v1/documents", json={"documents": new}).json()
    assert body == {"index": "docs", "added": ["n1", "n2"], "documents": 42}
    hits = client.post("/v1/search", json={"query": "mouse brain", "doc_ids": ["n1", "d0"], "k": 2,
                                           "include_text": True}).json()["results"]
    assert {h["doc_id"] for h in hits} == {"n1", "d0"} and next(h for h in hits if h["doc_id"] == "n1")["text"] == new["n1"]
    assert set(Searcher(str(index), verbose=0).loaded.live_ids) == set(DOCS) | set(new)  # on disk, committed
    body = client.request("DELETE", "/v1/documents", json={"doc_ids": ["n1", "d0"]}).json()
    assert body == {"index": "docs", "removed": ["n1", "d0"], "documents": 40}
    assert set(Searcher(str(index), verbose=0).loaded.live_ids) == (set(DOCS) | {"n2"}) - {"d0"}
    error(client.post("/v1/search", json={"query": "x", "doc_ids": ["n1"]}), 422, "doc_ids")


def test_writes_print_no_progress_bar(client, capfd):
    capfd.readouterr()
    assert client.post("/v1/documents", json={"documents": {"q1": "heart heart blood"}}).status_code == 200
    assert client.request("DELETE", "/v1/documents", json={"doc_ids": ["q1"]}).status_code == 200
    err = capfd.readouterr().err
    assert "Building the IVF" not in err and "Encoding" not in err and "%|" not in err, err[-500:]


def test_bad_writes_change_nothing(client, index):
    error(client.post("/v1/documents", json={"documents": {"d1": "again"}}), 409, "documents")
    error(client.request("DELETE", "/v1/documents", json={"doc_ids": ["d1", "ghost"]}), 422, "doc_ids")
    error(client.request("DELETE", "/v1/documents", json={"doc_ids": list(DOCS)}), 422, "doc_ids")
    error(client.post("/v1/documents", json={"documents": {}}), 422, "documents")
    assert Searcher(str(index), verbose=0).loaded.doc_ids == list(DOCS)


def test_a_second_writer_waits_then_gets_409(make_client):
    client = make_client(write_wait_s=0.2)
    served = client.app.state.service.registry.indexes["docs"]
    client.portal.call(served.write_lock.acquire)  # a writer that does not finish
    try:
        error(client.post("/v1/documents", json={"documents": {"n9": "gene"}}), 409, "index")
    finally:
        client.portal.call(served.write_lock.release)
    assert client.post("/v1/documents", json={"documents": {"n9": "gene"}}).status_code == 200


def test_int_ids_accept_strings_of_digits(make_client, _tiny_checkpoint_master, tmp_path):
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="ints")):
        path = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0).index(
            "ints", texts(30), overwrite=True)
    client = started(create_app(ServerConfig(indexes=[parse_index_spec(path)])))
    try:
        assert client.post("/v1/documents", json={"documents": {"100": "gene cell"}}).json()["added"] == [100]
        hits = client.post("/v1/search", json={"query": "gene", "doc_ids": [100, "3"], "k": 2}).json()["results"]
        assert {h["doc_id"] for h in hits} == {100, 3}
        assert client.post("/v1/documents", json={"documents": {"x-1": "cell"}}).json()["added"] == ["x-1"]
        hits = client.post("/v1/rerank", json={"query": "gene", "doc_ids": [3, "4", "x-1"], "k": 3}).json()["results"]
        assert {h["doc_id"] for h in hits} == {3, 4, "x-1"}  # ints still found once the ids are mixed
        assert client.request("DELETE", "/v1/documents", json={"doc_ids": ["100", "x-1"]}).json()["removed"] == \
            [100, "x-1"]
    finally:
        client.__exit__(None, None, None)


# ---------------------------------------------------------------------------------------------------- auth


def test_keys(make_client):
    client = make_client(api_key=READ, write_key=WRITE)
    query = {"query": "gene", "k": 1}
    error(client.post("/v1/search", json=query), 401)
    error(client.post("/v1/search", json=query, headers=auth("wrong")), 401)
    error(client.post("/v1/search", json=query, headers={"Authorization": READ}), 401)  # no "Bearer"
    assert client.post("/v1/search", json=query, headers=auth(READ)).status_code == 200
    assert client.post("/v1/search", json=query, headers=auth(WRITE)).status_code == 200
    error(client.post("/v1/documents", json={"documents": {"k1": "x"}}, headers=auth(READ)), 403)
    error(client.request("DELETE", "/v1/documents", json={"doc_ids": ["d1"]}, headers=auth(READ)), 403)
    assert client.post("/v1/documents", json={"documents": {"k1": "x"}}, headers=auth(WRITE)).status_code == 200
    for path in ("/health", "/metrics", "/ready"):
        error(client.get(path), 401)
    assert client.get("/openapi.json").status_code == 200


def test_unauthenticated_requests_are_refused_before_their_body_is_read(make_client):
    client = make_client(api_key=READ, max_body_bytes=100)
    error(client.post("/v1/search", content=b"{not json" * 50, headers={"content-type": "application/json"}), 401)


def test_health_and_metrics_can_be_left_open(make_client):
    client = make_client(api_key=READ, open_health_metrics=True)
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200 and client.get("/ready").status_code == 200
    error(client.post("/v1/search", json={"query": "x"}), 401)


def test_a_key_is_required_beyond_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="--api-key"):
        ServerConfig(host="0.0.0.0", api_key=None).check_exposure()
    ServerConfig(host="0.0.0.0", api_key="k").check_exposure()
    ServerConfig(host="0.0.0.0", api_key=None, insecure=True).check_exposure()
    with pytest.raises(ValueError, match="write key"):
        ServerConfig(api_key=None, write_key="w")


# -------------------------------------------------------------------------------------------------- limits


def test_every_limit_names_its_field(make_client):
    client = make_client(max_body_bytes=3000, max_k=20, max_batch=3, max_documents=4, max_text_chars=50)
    error(client.post("/v1/search", content=b"{" + b" " * 4000 + b"}",
                      headers={"content-type": "application/json"}), 413, "body")
    error(client.post("/v1/search", json={"query": "x", "k": 21}), 422, "k")
    error(client.post("/v1/search", json={"query": "x", "k": 0}), 422, "k")
    error(client.post("/v1/search", json={"queries": ["a", "b", "c", "d"]}), 422, "queries")
    error(client.post("/v1/search", json={"queries": []}), 422, "queries")
    error(client.post("/v1/search", json={"query": "x" * 51}), 422, "query")
    error(client.post("/v1/search", json={"queries": ["a", "x" * 51]}), 422, "queries.1")
    error(client.post("/v1/search", json={"query": "x", "doc_ids": ["d1", "d2", "d3", "d4", "d5"]}), 422, "doc_ids")
    error(client.post("/v1/rerank", json={"query": "x", "documents": ["a"] * 5}), 422, "documents")
    error(client.post("/v1/rerank", json={"query": "x", "documents": ["a", "y" * 51]}), 422, "documents.1")
    error(client.post("/v1/encode", json={"texts": ["a"] * 4}), 422, "texts")
    error(client.post("/v1/documents", json={"documents": {f"n{i}": "a" for i in range(5)}}), 422, "documents")
    error(client.post("/v1/documents", json={"documents": {"n1": "y" * 51}}), 422, "documents.n1")
    error(client.request("DELETE", "/v1/documents", json={"doc_ids": ["d1"] * 5}), 422, "doc_ids")
    assert client.post("/v1/search", json={"queries": ["a", "b", "c"], "k": 20}).status_code == 200


def test_a_streamed_body_over_the_limit_gets_413(make_client):
    client = make_client(max_body_bytes=1000)

    def chunks():
        for _ in range(20):
            yield b" " * 100

    error(client.post("/v1/search", content=chunks(), headers={"content-type": "application/json"}), 413, "body")


def test_malformed_and_mistyped_bodies(client):
    error(client.post("/v1/search", content=b'{"query": ', headers={"content-type": "application/json"}), 400, "body")
    error(client.post("/v1/search", json={"query": 5}), 422, "query")
    error(client.post("/v1/search", json={"query": "x", "k": "ten"}), 422, "k")
    error(client.post("/v1/search", json={"query": "x", "kk": 3}), 422, "kk")
    error(client.post("/v1/search", json={"query": "x", "queries": ["y"]}), 422, "query")
    error(client.post("/v1/search", json={}), 422, "query")
    error(client.post("/v1/search", json=["x"]), 422)
    error(client.post("/v1/rerank", json={"query": "x", "doc_ids": [1.5]}), 422)
    error(client.get("/v1/search"), 405)
    error(client.get("/nowhere"), 404)


def test_unknown_and_path_like_index_names_reach_no_file(client, tmp_path):
    error(client.post("/v1/search", json={"query": "x", "index": "other"}), 404, "index")
    outside = tmp_path / "indexes" / "docs"  # a real index folder, by path: still only names are served
    for name in ("../docs", str(outside), "docs/..", "..", ".", "docs/../docs", "%2e%2e", "", "a" * 65):
        body = error(client.post("/v1/search", json={"query": "x", "index": name}), 422, "index")
        assert str(tmp_path) not in body["message"]


def test_several_indexes_need_a_name(index, master, tmp_path):
    other = Path(shutil.copytree(index, tmp_path / "other"))
    config = ServerConfig(indexes=[IndexSpec("docs", index), parse_index_spec(f"b={other}")])
    client = started(create_app(config))
    try:
        error(client.post("/v1/search", json={"query": "x"}), 422, "index")
        assert client.post("/v1/search", json={"query": "x", "index": "b"}).json()["index"] == "b"
        assert client.get("/ready").json() == {"ready": True, "indexes": {"docs": "ready", "b": "ready"}}
    finally:
        client.__exit__(None, None, None)


def test_no_stack_trace_reaches_a_response(client, monkeypatch):
    service = client.app.state.service

    async def boom(body):
        raise RuntimeError("secret detail /very/private/path")

    monkeypatch.setattr(service, "search", boom)
    response = client.post("/v1/search", json={"query": "x"})
    body = error(response, 500)
    assert "secret" not in response.text and "private" not in response.text and body["type"] == "internal"


def test_an_index_that_fails_to_load_is_unready(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    client = TestClient(create_app(ServerConfig(indexes=[IndexSpec("broken", broken)])),
                        raise_server_exceptions=False)
    with client:
        client.portal.call(client.app.state.service.wait_loaded)
        assert client.get("/ready").json() == {"ready": False, "indexes": {"broken": "failed"}}
        assert client.get("/health").status_code == 200
        body = error(client.post("/v1/search", json={"query": "x"}), 503, "index")
        assert str(tmp_path) not in body["message"]


# ------------------------------------------------------------------------------------------------- metrics


def test_metrics_count_requests_and_describe_the_indexes(client):
    client.post("/v1/search", json={"query": "x"})
    client.post("/v1/search", json={"query": "x", "k": -1})
    text = client.get("/metrics").text
    assert 'colbert_requests_total{endpoint="/v1/search",method="POST",status="200"} 1.0' in text
    assert 'colbert_requests_total{endpoint="/v1/search",method="POST",status="422"} 1.0' in text
    assert 'colbert_request_seconds_bucket{endpoint="/v1/search",le="+Inf"} 2.0' in text
    assert 'colbert_index_documents{index="docs"} 40.0' in text
    assert "colbert_requests_in_flight 1.0" in text  # the /metrics request itself
    assert "colbert_encode_batch_size_count" in text
    if sys.platform.startswith("linux"):
        assert "process_resident_memory_bytes" in text


def test_openapi_lists_the_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/search", "/v1/rerank", "/v1/encode", "/v1/documents", "/health", "/ready", "/metrics"} <= set(paths)
    assert client.get("/docs").status_code == 200


# --------------------------------------------------------------------------------------------- packaging


def test_import_colbert_does_not_import_the_server_extra():
    code = "import colbert, colbert.cli, sys; print(sorted(m for m in ('fastapi', 'uvicorn', 'prometheus_client') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_without_the_extra_says_how_to_install_it(index):
    code = ("import sys; sys.modules['fastapi'] = None; from colbert.cli import main; "
            f"sys.exit(main(['serve', '--index', {str(index)!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "pip install 'colbert-ai[server]'" in out.stderr


def test_serve_refuses_to_listen_beyond_loopback_without_a_key(index):
    code = f"import sys; from colbert.cli import main; sys.exit(main(['serve', '--index', {str(index)!r}, " \
           "'--host', '0.0.0.0']))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLBERT_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 2 and "--api-key" in out.stderr


def test_index_specs():
    assert parse_index_spec("a=/x/y") == IndexSpec("a", Path("/x/y"))
    assert parse_index_spec("/x/scifact.nbits2/").name == "scifact.nbits2"
    for bad in ("../x=/y", "a b=/y", "=/y", "a="):
        with pytest.raises(ValueError):
            parse_index_spec(bad)
    with pytest.raises(ValueError, match="unique"):
        ServerConfig(indexes=[parse_index_spec("a=/x"), parse_index_spec("a=/y")])


def test_an_index_that_stores_its_documents_serves_their_text_and_metadata(_tiny_checkpoint_master, tmp_path):
    docs = dict(list(DOCS.items())[:20])
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="stored")):
        path = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0).index(
            "stored", docs, metadata={doc_id: {"n": i} for i, doc_id in enumerate(docs)}, overwrite=True)
    client = started(create_app(ServerConfig(indexes=[parse_index_spec(f"s={path}")])))
    try:
        hits = client.post("/v1/search", json={"query": "gene", "k": 3, "include_text": True}).json()["results"]
        assert all(h["text"] == docs[h["doc_id"]] and h["metadata"] == {"n": list(docs).index(h["doc_id"])}
                   for h in hits)
        added = client.post("/v1/documents", json={"documents": {"x1": "brain brain"},
                                                   "metadata": {"x1": {"year": 2024}}})
        assert added.status_code == 200, added.text
        hit = client.post("/v1/rerank", json={"query": "brain", "doc_ids": ["x1"], "include_text": True}).json()
        assert hit["results"][0] | {"score": 0} == {"doc_id": "x1", "rank": 1, "score": 0, "text": "brain brain",
                                                   "metadata": {"year": 2024}}
        error(client.post("/v1/documents", json={"documents": {"x2": "a"}, "metadata": {"x3": {}}}), 422, "metadata")
    finally:
        client.__exit__(None, None, None)
    assert Searcher(str(path), verbose=0).documents.get("x1")["metadata"] == {"year": 2024}  # committed with it


def test_concurrent_queries_are_encoded_together(index, searcher):
    import asyncio

    import httpx

    app = create_app(ServerConfig(indexes=[IndexSpec("docs", index)], batch_window_ms=300, encode_batch=32))

    async def run() -> list:
        async with app.router.lifespan_context(app):
            await app.state.service.wait_loaded()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                queries = [f"protein cell {w}" for w in WORDS[:8]]
                answers = await asyncio.gather(*(http.post("/v1/search", json={"query": q, "k": 3}) for q in queries))
                metrics = (await http.get("/metrics")).text
        return queries, answers, metrics

    queries, answers, metrics = asyncio.run(run())
    for query, answer in zip(queries, answers):
        assert [h["doc_id"] for h in answer.json()["results"]] == searcher.search(query, k=3)[0]
    assert "colbert_encode_batch_size_count 1.0" in metrics and "colbert_encode_batch_size_sum 8.0" in metrics


@pytest.mark.slow
def test_minilm_service_answers_as_the_searcher_and_bf16_rerank_keeps_the_ranking(minilm_checkpoint, tmp_path):
    from colbert.data import Collection, Queries
    from conftest import SCIFACT

    collection = Collection(path=SCIFACT / "collection.tsv")
    docs = {collection.id_of(p): collection[p] for p in range(300)}
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="minilm")):
        path = Indexer(str(minilm_checkpoint), config=ColBERTConfig(nbits=2), verbose=0).index("sci", docs)
    queries = list(Queries(path=SCIFACT / "queries.tsv").values())[:10]
    searcher = Searcher(path, verbose=0)
    client = started(create_app(ServerConfig(indexes=[parse_index_spec(path)], rerank_precision="bf16")))
    try:
        answers = client.post("/v1/search", json={"queries": queries, "k": 10}).json()["results"]
        for query, hits in zip(queries, answers):
            assert [h["doc_id"] for h in hits] == searcher.search(query, k=10)[0]
        texts, overlap = list(docs.values())[:50], []
        for query in queries:
            hits = client.post("/v1/rerank", json={"query": query, "documents": texts, "k": 10}).json()["results"]
            exact = searcher.checkpoint.rerank(query, texts, k=50)
            scores = dict(exact)
            assert all(h["score"] == pytest.approx(scores[h["index"]], rel=0.01) for h in hits)
            overlap.append(len({h["index"] for h in hits} & {i for i, _ in exact[:10]}) / 10)
        assert sum(overlap) / len(overlap) >= 0.9
    finally:
        client.__exit__(None, None, None)


def test_jobs_run_the_kernels_on_one_thread_while_other_requests_are_in_flight():
    import asyncio

    from colbert import kernels
    from colbert.server.batching import Workers

    if kernels.native_cpu_threads() is None:
        pytest.skip("no native CPU kernels: nothing to cap")
    before = torch.get_num_threads()
    busy = {"now": False}
    workers = Workers(1, busy=lambda: busy["now"])

    async def probe() -> tuple:
        alone = await workers.on_search(kernels.native_cpu_threads)
        busy["now"] = True
        probe = kernels.native_cpu_threads
        crowded = (await workers.on_search(probe), await workers.on_model(probe), await workers.on_write(probe))
        return alone, crowded

    try:
        torch.set_num_threads(2)
        alone, crowded = asyncio.run(probe())
    finally:
        workers.shutdown()
        torch.set_num_threads(before)
    assert alone == 2 and crowded == (1, 1, 1)
