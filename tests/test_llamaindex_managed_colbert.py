"""`llama-index-indices-managed-colbert`, the existing LlamaIndex package, unchanged, builds, queries and persists a
ColbertIndex with this library as its `colbert` (it imports `from colbert import Indexer, Searcher`).

Install it without its dependencies, or pip would pull the other colbert-ai over this package:
`pip install --no-deps llama-index-indices-managed-colbert`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

managed = pytest.importorskip(
    "llama_index.indices.managed.colbert",
    reason="llama-index-indices-managed-colbert is not installed (pip install --no-deps "
           "llama-index-indices-managed-colbert; --no-deps, or it pulls colbert-ai over this package)",
)

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(m),), generator=g))
            for m in torch.randint(3, 20, (n,), generator=g)]


@pytest.mark.parametrize("index_name", ["pubmed", ""])  # "" is the package's default: the index fills its root
def test_colbert_index_builds_queries_and_persists(_tiny_checkpoint_master, tmp_path, monkeypatch, index_name):
    from llama_index.core import Document

    import colbert

    assert Path(colbert.__file__).resolve().parents[1] == Path(__file__).resolve().parents[1]  # this library
    monkeypatch.chdir(tmp_path)  # the package writes to ./storage/colbert_index
    docs = [Document(text=t, doc_id=f"doc-{i}") for i, t in enumerate(texts(24))]
    index = managed.ColbertIndex.from_documents(docs, model_name=str(_tiny_checkpoint_master),
                                                index_name=index_name, doc_maxlen=64, query_maxlen=16,
                                                kmeans_niters=2)
    assert (tmp_path / "storage" / "colbert_index" / index_name / "metadata.json").is_file()

    query = "cancer therapy trial"
    hits = index.query(query, top_k=5)
    ids, _, scores = index.store.search(query, k=5)
    assert len(hits) == 5 and [h.score for h in hits] == pytest.approx(scores)
    text_of = {d.doc_id: d.text for d in docs}
    assert all(h.node.get_content() == text_of[h.node.ref_doc_id] for h in hits)
    retrieved = index.as_retriever(similarity_top_k=3).retrieve(query)
    assert [n.node.node_id for n in retrieved] == [h.node.node_id for h in hits[:3]]

    index.persist(str(tmp_path / "saved"))
    reloaded = managed.ColbertIndex.load_from_disk(str(tmp_path / "saved"), index_name=index_name)
    again = reloaded.query(query, top_k=5)
    assert [h.node.node_id for h in again] == [h.node.node_id for h in hits]
    assert [h.score for h in again] == pytest.approx([h.score for h in hits])
