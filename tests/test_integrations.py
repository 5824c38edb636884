"""LangChain and LlamaIndex adapters, with the real langchain-core and llama-index-core packages, over a tiny index
that stores texts and metadata (tiny random model, 30 passages)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.integrations.hits import as_predicate
from colbert.modeling.checkpoint import Checkpoint

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
NUM_DOCS = 30


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(m),), generator=g))
            for m in torch.randint(3, 20, (n,), generator=g)]


DOCS = {f"d{i}": t for i, t in enumerate(texts(NUM_DOCS))}
META = {f"d{i}": {"year": 2000 + i, "lang": "en" if i % 3 else "fr"} for i in range(NUM_DOCS)}
QUERY = "cancer therapy trial"


@pytest.fixture(scope="module")
def index(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrations")
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="test")):
        indexer = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0)
        return Path(indexer.index("docs", DOCS, metadata=META))


@pytest.fixture(scope="module")
def searcher(index) -> Searcher:
    return Searcher(str(index), verbose=0)


@pytest.fixture(scope="module")
def checkpoint(_tiny_checkpoint_master) -> Checkpoint:
    return Checkpoint(str(_tiny_checkpoint_master), verbose=0)


def test_import_colbert_imports_no_framework():
    code = ("import sys, colbert, colbert.integrations, colbert.integrations.hits; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('langchain_core', 'llama_index', 'qdrant_client', 'onnxruntime', 'onnx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_dict_filters_match_every_key():
    keep = as_predicate({"lang": "en", "year": [2001, 2002]})
    assert keep({"lang": "en", "year": 2001}) and not keep({"lang": "fr", "year": 2001}) and not keep({"lang": "en"})
    with pytest.raises(TypeError, match="metadata filter"):
        as_predicate(["lang"])


# --------------------------------------------------------------------------------------------------- LangChain


def test_langchain_retriever_returns_documents_with_id_score_and_metadata(searcher):
    lc = pytest.importorskip("colbert.integrations.langchain", reason="langchain-core is not installed")
    retriever = lc.ColBERTRetriever(searcher=searcher, k=5)
    docs = retriever.invoke(QUERY)
    ids, ranks, scores = searcher.search(QUERY, k=5)
    assert [d.metadata["doc_id"] for d in docs] == ids
    assert [d.id for d in docs] == [str(i) for i in ids]
    assert [d.metadata["score"] for d in docs] == pytest.approx(scores)
    assert [d.metadata["rank"] for d in docs] == ranks
    assert all(d.page_content == DOCS[d.metadata["doc_id"]] for d in docs)
    assert all(d.metadata["year"] == META[d.metadata["doc_id"]]["year"] for d in docs)
    assert asyncio.run(retriever.ainvoke(QUERY)) == docs


def test_langchain_retriever_filters_before_scoring_and_takes_per_call_k(searcher):
    lc = pytest.importorskip("colbert.integrations.langchain", reason="langchain-core is not installed")
    retriever = lc.ColBERTRetriever(searcher=searcher, k=4, filter={"lang": "fr"})
    docs = retriever.invoke(QUERY)
    french = [i for i in searcher.search(QUERY, k=NUM_DOCS, exact=True)[0] if META[i]["lang"] == "fr"]
    assert [d.metadata["doc_id"] for d in docs] == french[:4]
    two = retriever.invoke(QUERY, k=2, filter=lambda m: m["year"] >= 2028)
    assert sorted(d.metadata["doc_id"] for d in two) == ["d28", "d29"]
    assert retriever.invoke(QUERY, filter={"lang": "de"}) == []


def test_langchain_retriever_from_index_and_without_texts(index, _tiny_checkpoint_master, tmp_path):
    lc = pytest.importorskip("colbert.integrations.langchain", reason="langchain-core is not installed")
    assert len(lc.ColBERTRetriever.from_index(str(index), k=3).invoke(QUERY)) == 3
    bare = Path(shutil.copytree(index, tmp_path / "bare"))
    (bare / "documents.jsonl").unlink()
    with pytest.raises(ValueError, match="stores no document texts"):
        lc.ColBERTRetriever.from_index(str(bare))
    retriever = lc.ColBERTRetriever.from_index(str(bare), collection=DOCS)  # texts from the collection instead
    docs = retriever.invoke(QUERY)
    assert all(d.page_content == DOCS[d.metadata["doc_id"]] for d in docs)


def test_langchain_reranker_orders_candidates_by_maxsim(checkpoint):
    lc = pytest.importorskip("colbert.integrations.langchain", reason="langchain-core is not installed")
    from langchain_core.documents import Document

    candidates = [Document(page_content=t, metadata={"doc_id": i}) for i, t in DOCS.items()][:12]
    reranker = lc.ColBERTReranker(checkpoint=checkpoint, top_n=4)
    best = reranker.compress_documents(candidates, QUERY)
    expected = checkpoint.rerank(QUERY, [d.page_content for d in candidates], k=4)
    assert [d.metadata["doc_id"] for d in best] == [candidates[i].metadata["doc_id"] for i, _ in expected]
    assert [d.metadata["relevance_score"] for d in best] == pytest.approx([s for _, s in expected])
    scores = [d.metadata["relevance_score"] for d in best]
    assert scores == sorted(scores, reverse=True)
    assert [d.metadata["doc_id"] for d in reranker.compress_documents(candidates[::-1], QUERY)] == \
        [d.metadata["doc_id"] for d in best]  # the input order does not matter
    assert asyncio.run(reranker.acompress_documents(candidates, QUERY)) == best
    assert reranker.compress_documents([], QUERY) == []


# --------------------------------------------------------------------------------------------------- LlamaIndex


def test_llamaindex_retriever_returns_nodes_with_scores(searcher):
    li = pytest.importorskip("colbert.integrations.llamaindex", reason="llama-index-core is not installed")
    retriever = li.ColBERTRetriever(searcher, k=5)
    nodes = retriever.retrieve(QUERY)
    ids, _, scores = searcher.search(QUERY, k=5)
    assert [n.node.node_id for n in nodes] == [str(i) for i in ids]
    assert [n.score for n in nodes] == pytest.approx(scores)
    assert all(n.node.get_content() == DOCS[n.node.metadata["doc_id"]] for n in nodes)
    assert all(n.node.metadata["lang"] == META[n.node.metadata["doc_id"]]["lang"] for n in nodes)
    again = asyncio.run(retriever.aretrieve(QUERY))
    assert [(n.node.node_id, n.score) for n in again] == [(n.node.node_id, n.score) for n in nodes]
    french = li.ColBERTRetriever(searcher, k=3, filter={"lang": "fr"}).retrieve(QUERY)
    assert len(french) == 3 and all(n.node.metadata["lang"] == "fr" for n in french)


def test_llamaindex_rerank_postprocessor(checkpoint, searcher):
    li = pytest.importorskip("colbert.integrations.llamaindex", reason="llama-index-core is not installed")
    nodes = li.ColBERTRetriever(searcher, k=10).retrieve(QUERY)
    rerank = li.ColBERTRerank(checkpoint=checkpoint, top_n=3)
    best = rerank.postprocess_nodes(nodes, query_str=QUERY)
    expected = checkpoint.rerank(QUERY, [n.node.get_content() for n in nodes], k=3)
    assert [n.node.node_id for n in best] == [nodes[i].node.node_id for i, _ in expected]
    assert [n.score for n in best] == pytest.approx([s for _, s in expected])
    again = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert [n.node.node_id for n in again] == [n.node.node_id for n in best]
    with pytest.raises(ValueError, match="needs the query"):
        rerank.postprocess_nodes(nodes)
