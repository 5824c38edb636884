"""ONNX export (`colbert export onnx`) and OnnxCheckpoint: fp32 parity with torch per embedding, dynamic axes, the
sidecar is enough to rebuild our inputs, int8 variants, search through onnxruntime. Tiny random model; MiniLM on
SciFact in the slow test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install colbert-ai[onnx])")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install colbert-ai[onnx])")

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher  # noqa: E402
from colbert.cli import main  # noqa: E402
from colbert.export.onnx import SIDECAR, OnnxCheckpoint  # noqa: E402
from colbert.modeling.checkpoint import Checkpoint  # noqa: E402
from colbert.modeling.tokenization import punctuation_skiplist  # noqa: E402
from conftest import COMPAT, SCIFACT, need_shared  # noqa: E402

QUERIES = ["what causes anemia?", "", "protein folding in mammalian cells, and its effect on aging " * 4, "a"]
DOCS = ["Short doc.", "A longer document, with punctuation; and more words (many) here! " * 6, "x", "gene cell"]
PARITY = 1e-4  # fp32 ONNX vs torch, per embedding value


@pytest.fixture(scope="module")
def exported(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    assert main(["export", "onnx", str(_tiny_checkpoint_master), str(out), "--json"]) == 0
    return out


@pytest.fixture(scope="module")
def torch_checkpoint(_tiny_checkpoint_master) -> Checkpoint:
    return Checkpoint(str(_tiny_checkpoint_master), verbose=0)


def test_export_writes_models_tokenizer_and_sidecar(exported, torch_checkpoint):
    names = {p.name for p in exported.iterdir()}
    assert {"query.onnx", "document.onnx", "query.int8.onnx", "document.int8.onnx", SIDECAR,
            "tokenizer.json"} <= names
    meta = json.loads((exported / SIDECAR).read_text())
    config = torch_checkpoint.colbert_config
    assert meta["dim"] == config.dim == 16
    assert meta["query"]["maxlen"] == config.query_maxlen and meta["document"]["maxlen"] == config.doc_maxlen
    assert meta["query"]["marker_id"] == torch_checkpoint.query_tokenizer.Q_marker_token_id
    assert meta["document"]["marker_id"] == torch_checkpoint.doc_tokenizer.D_marker_token_id
    assert meta["document"]["skiplist_ids"] == punctuation_skiplist(torch_checkpoint.raw_tokenizer)
    assert meta["tokenizer"]["mask_id"] == torch_checkpoint.raw_tokenizer.mask_token_id
    for name in ("query.onnx", "document.onnx"):
        graph = onnx.load(str(exported / name)).graph
        for tensor in (*graph.input, graph.output[0]):
            dims = tensor.type.tensor_type.shape.dim
            assert [d.dim_param for d in dims[:2]] == ["batch", "sequence"], (name, tensor.name)


def test_fp32_onnx_matches_torch_per_embedding(exported, torch_checkpoint):
    onnx_checkpoint = OnnxCheckpoint(exported)
    Q_torch, Q_onnx = torch_checkpoint.queryFromText(QUERIES), onnx_checkpoint.queryFromText(QUERIES)
    assert Q_onnx.shape == Q_torch.shape
    assert (Q_onnx - Q_torch).abs().max() < PARITY
    full = onnx_checkpoint.queryFromText(QUERIES[2:3], full_length_search=True)  # a longer sequence axis
    assert full.size(1) > 16 and (full - torch_checkpoint.queryFromText(QUERIES[2:3], full_length_search=True)
                                  ).abs().max() < PARITY
    for bsize in (1, 3):  # batch axis of 1 and of 3, sequences of every length
        D_torch = torch_checkpoint.docFromText(DOCS, bsize=bsize, keep_dims=False)
        D_onnx = onnx_checkpoint.docFromText(DOCS, bsize=bsize, keep_dims=False)
        assert [d.shape for d in D_onnx] == [d.shape for d in D_torch]  # the same rows kept (punctuation dropped)
        assert max((a - b).abs().max() for a, b in zip(D_onnx, D_torch)) < PARITY
    assert [i for i, _ in onnx_checkpoint.rerank(QUERIES[0], DOCS, k=4)] == \
        [i for i, _ in torch_checkpoint.rerank(QUERIES[0], DOCS, k=4)]


def test_the_sidecar_is_enough_to_build_the_inputs(exported, torch_checkpoint):
    """A client with only OUT (tokenizer.json + colbert_onnx.json + query.onnx) reproduces our query embeddings."""
    import numpy as np
    from tokenizers import Tokenizer

    meta = json.loads((exported / SIDECAR).read_text())
    tok, q = Tokenizer.from_file(str(exported / "tokenizer.json")), meta["query"]
    tok.no_padding()
    tok.enable_truncation(q["maxlen"] - 1)
    rows, masks = [], []
    for text in QUERIES:
        ids = tok.encode(text).ids
        ids = ids[:1] + [q["marker_id"]] + ids[1:]
        mask = [1] * len(ids) + [0] * (q["maxlen"] - len(ids))
        ids = ids + [meta["tokenizer"]["mask_id"]] * (q["maxlen"] - len(ids))
        if q["attend_to_mask_tokens"]:
            mask = [1] * len(ids)
        rows.append(ids)
        masks.append(mask)
    session = ort.InferenceSession(str(exported / q["model"]), providers=["CPUExecutionProvider"])
    Q = session.run(None, {"input_ids": np.array(rows, dtype=np.int64),
                           "attention_mask": np.array(masks, dtype=np.int64)})[0]
    assert Q.shape == (len(QUERIES), q["maxlen"], meta["dim"])
    assert np.abs(Q - torch_checkpoint.queryFromText(QUERIES).numpy()).max() < PARITY


def test_int8_models_stay_close(exported, torch_checkpoint):
    int8 = OnnxCheckpoint(exported, int8=True)
    Q_torch, Q_int8 = torch_checkpoint.queryFromText(QUERIES), int8.queryFromText(QUERIES)
    cosine = (Q_torch * Q_int8).sum(-1)  # (n, Lq): rows are unit vectors
    assert cosine.mean() > 0.95, cosine.mean()


def test_a_searcher_encodes_queries_through_onnxruntime(exported, _tiny_checkpoint_master, tmp_path):
    words = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient".split()
    collection = [" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 9)) for i in range(40)]
    with Run().context(RunConfig(nranks=1, root=str(tmp_path), experiment="test")):
        index = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0).index("i", collection)
    searcher = Searcher(index, verbose=0)
    expected = [searcher.search(q, k=5) for q in ("cancer therapy", "brain blood")]
    onnx_searcher = Searcher(index, checkpoint=str(exported), verbose=0)  # an export folder as the checkpoint
    assert isinstance(onnx_searcher.checkpoint, OnnxCheckpoint)
    for (ids, _, scores), q in zip(expected, ("cancer therapy", "brain blood")):
        got = onnx_searcher.search(q, k=5)
        assert got[0] == ids and got[2] == pytest.approx(scores, abs=1e-3)


def test_a_folder_without_a_sidecar_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an ONNX export"):
        OnnxCheckpoint(tmp_path)


@pytest.mark.slow
def test_int8_minilm_keeps_most_of_the_top10_of_scifact_queries(minilm_checkpoint, tmp_path):
    """Queries encoded by the int8 model, searched exactly on 1,000 SciFact passages, against torch fp32 queries.

    The issue asked for the same top-10 on >= 95 % of queries; that does not hold (benchmarks/onnx_quality.py: 2 %
    identical lists, 29 % identical sets; even torch bf16 gives 70 % identical lists on this checkpoint, whose
    scores lie close together). What holds, and is asserted: the same top-1 for most queries and most of the top-10
    (measured 86 % and 0.887), at the same nDCG@10 (0.712 vs 0.709, stated in docs/onnx.md)."""
    from colbert.data import Queries
    from colbert.export.onnx import export_onnx

    need_shared()
    out = export_onnx(minilm_checkpoint, tmp_path / "minilm-onnx")
    searcher = Searcher(str(COMPAT / "index-scifact1k-nbits2"), checkpoint=str(minilm_checkpoint), verbose=0)
    queries = list(Queries(path=SCIFACT / "queries.tsv").values())
    Q_torch, Q_int8 = searcher.encode(queries), OnnxCheckpoint(out, int8=True).queryFromText(queries)
    pairs = [(searcher.dense_search(a, 10, exact=True)[0], searcher.dense_search(b, 10, exact=True)[0])
             for a, b in zip(Q_torch, Q_int8)]
    overlap = sum(len(set(a) & set(b)) for a, b in pairs) / (10 * len(pairs))
    top1 = sum(a[0] == b[0] for a, b in pairs) / len(pairs)
    assert overlap >= 0.85 and top1 >= 0.8, (overlap, top1)
