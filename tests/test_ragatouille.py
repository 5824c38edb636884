"""RAGatouille 0.0.9.post2, unmodified, on this library: index, search, add, delete, from_index, rerank, encode.

RAGatouille is installed with `pip install --no-deps ragatouille==0.0.9.post2` (it requires colbert-ai, which would
replace this library; .ci/run does so) plus its own dependencies (the `test` extra). It imports
`langchain.retrievers.document_compressors.base.BaseDocumentCompressor` from langchain < 1, which conflicts with
the langchain-core 1.x the integrations use; that module only re-exported langchain-core's class, so the test
aliases it when langchain lacks it.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from conftest import COMPAT, need_shared

pytestmark = pytest.mark.slow


def _alias_langchain_compressor() -> None:
    try:
        importlib.import_module("langchain.retrievers.document_compressors.base")
        return
    except ImportError:
        pass
    from langchain_core.documents.compressor import BaseDocumentCompressor

    names = ["langchain", "langchain.retrievers", "langchain.retrievers.document_compressors",
             "langchain.retrievers.document_compressors.base"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[names[-1]].BaseDocumentCompressor = BaseDocumentCompressor


@pytest.fixture(scope="module")
def ragatouille():
    pytest.importorskip("langchain_core", reason="langchain-core is needed by ragatouille")
    _alias_langchain_compressor()
    pytest.importorskip("ragatouille", reason="pip install --no-deps ragatouille==0.0.9.post2 (see .ci/run)")
    import colbert
    import ragatouille

    assert Path(colbert.__file__).resolve().parents[1] == Path(__file__).resolve().parents[1]  # ours, not colbert-ai
    return ragatouille


def docs() -> tuple[list[str], list[str]]:
    need_shared()
    lines = (COMPAT / "collection-scifact1k.tsv").read_text(encoding="utf-8").splitlines()[:60]
    texts = [line.split("\t")[1] for line in lines]
    return texts, [f"doc{i}" for i in range(len(texts))]


def test_ragatouille_flows_run_on_this_library(ragatouille, minilm_checkpoint, tmp_path, monkeypatch):
    from ragatouille import RAGPretrainedModel
    from ragatouille.models.index import PLAIDModelIndex

    from colbert import Searcher

    texts, ids = docs()
    monkeypatch.chdir(tmp_path)
    rag = RAGPretrainedModel.from_pretrained(str(minilm_checkpoint), index_root=str(tmp_path / "idx"), verbose=0)
    path = rag.index(collection=texts, document_ids=ids, index_name="sf", split_documents=False)
    assert Path(path, "metadata.json").is_file()
    hits = rag.search(texts[7], k=5)
    assert hits[0]["document_id"] == "doc7" and hits[0]["content"] == texts[7] and len(hits) == 5

    # add: RAGatouille rebuilds small collections; force its IndexUpdater path, the one large indexes take
    monkeypatch.setattr(PLAIDModelIndex, "_should_rebuild", staticmethod(lambda current, new: False))
    new_text = "Zebrafish fin regeneration depends on osteoblast dedifferentiation."
    rag.add_to_index([new_text], new_document_ids=["new1"], split_documents=False)
    # RAGatouille keeps serving the searcher it loaded before add/delete (with colbert-ai as well): reopen the index
    hit = RAGPretrainedModel.from_index(path).search(new_text, k=3)[0]
    assert (hit["document_id"], hit["content"], hit["passage_id"]) == ("new1", new_text, 60)  # the next pid
    rag.delete_from_index(document_ids=["doc3", "doc7"])
    # RAGatouille maps pids to ids with pid_docid_map, which relies on stable pids (it drops the deleted ones and
    # renumbers nothing); its collection.json, though, is compacted, so its "content" is off after a delete (with
    # colbert-ai too). Check the ids through the map on a fresh Searcher of this library.
    pid_to_id = RAGPretrainedModel.from_index(path).model.pid_docid_map
    assert set(pid_to_id.values()) == set(ids) - {"doc3", "doc7"} | {"new1"}
    searcher = Searcher(path, verbose=0)
    for query in (texts[3], texts[7], new_text, "protein"):
        found = [pid_to_id[pid] for pid in searcher.search(query, k=20)[0]]  # KeyError for a deleted pid
        assert len(found) == 20 and not {"doc3", "doc7"} & set(found)
    assert searcher.search(texts[12], k=1)[0] == [12] and pid_to_id[12] == "doc12"

    reranked = rag.rerank(query=texts[20], documents=texts[18:23], k=3)
    assert reranked[0]["content"] == texts[20] and len(reranked) == 3
    rag.encode(texts[30:35], document_metadatas=[{"n": i} for i in range(5)])
    encoded = rag.search_encoded_docs(query=texts[32], k=2)
    assert encoded[0]["content"] == texts[32] and encoded[0]["document_metadata"] == {"n": 2}
