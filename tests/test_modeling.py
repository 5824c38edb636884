from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from colbert import Checkpoint, ColBERTConfig
from colbert.errors import CheckpointError
from colbert.modeling import colbert_score, colbert_score_packed
from conftest import COMPAT

EMBEDDING_TOLERANCE = 1e-4  # ../shared/compat/README.md; ~1e-6 is expected on CPU fp32


@pytest.fixture(scope="module")
def minilm(minilm_checkpoint: Path) -> Checkpoint:
    return Checkpoint(str(minilm_checkpoint))


@pytest.fixture(scope="module")
def fixtures():
    texts = json.loads((COMPAT / "texts.json").read_text())
    return ([q["text"] for q in texts["queries"]], [d["text"] for d in texts["docs"]],
            np.load(COMPAT / "encodings.npz"))


@pytest.mark.compat
def test_query_ids_and_embeddings_match_the_reference(minilm, fixtures):
    queries, _, f = fixtures
    ids, mask = minilm.query_tokenizer.tensorize(queries)
    np.testing.assert_array_equal(ids.numpy(), f["q_input_ids"])
    np.testing.assert_array_equal(mask.numpy(), f["q_attention_mask"])
    Q = minilm.queryFromText(queries).numpy()
    assert np.abs(Q - f["q_embeddings"]).max() <= EMBEDDING_TOLERANCE


@pytest.mark.compat
def test_doc_ids_keep_mask_and_embeddings_match_the_reference(minilm, fixtures):
    _, docs, f = fixtures
    ids, mask = minilm.doc_tokenizer.tensorize(docs)
    np.testing.assert_array_equal(ids.numpy(), f["d_input_ids"])
    np.testing.assert_array_equal(mask.numpy(), f["d_attention_mask"])
    assert sorted(minilm.skiplist_ids.tolist()) == sorted(f["skiplist_ids"].tolist())
    D, doclens = minilm.docFromText(docs, bsize=64, keep_dims="flatten")
    assert doclens == f["d_doclens"].tolist()
    assert np.abs(D.numpy() - f["d_embeddings"]).max() <= EMBEDDING_TOLERANCE
    padded, keep = minilm.docFromText(docs, bsize=64, keep_dims=True)
    np.testing.assert_array_equal(keep.numpy(), f["d_keep_mask"])


def test_doc_return_forms_agree(tiny_checkpoint):
    ckpt = Checkpoint(str(tiny_checkpoint))
    docs = ["a short one", "a much longer document, with punctuation; and more words here", "", "x " * 100]
    flat, doclens = ckpt.docFromText(docs, bsize=2, keep_dims="flatten")
    per_doc = ckpt.docFromText(docs, bsize=2, keep_dims=False)
    padded, mask = ckpt.docFromText(docs, bsize=2, keep_dims=True)
    assert doclens == [d.size(0) for d in per_doc] == mask.sum(1).tolist()
    assert doclens[2] == 3  # an empty document keeps [CLS] [D] [SEP], as in the reference
    assert doclens[3] == 64  # truncated at doc_maxlen
    torch.testing.assert_close(flat, torch.cat(per_doc))
    torch.testing.assert_close(padded[mask], flat)
    assert torch.allclose(flat.norm(dim=-1), torch.ones(len(flat)), atol=1e-5)


def test_length_sorted_batches_give_the_same_vectors_as_one_batch(tiny_checkpoint):
    ckpt = Checkpoint(str(tiny_checkpoint))
    docs = [f"document number {i} " + "word " * (i * 7 % 40) for i in range(20)]
    one, lens_one = ckpt.docFromText(docs, bsize=100, keep_dims="flatten")
    many, lens_many = ckpt.docFromText(docs, bsize=3, keep_dims="flatten")
    assert lens_one == lens_many
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)


def test_save_then_load_gives_identical_embeddings(tiny_checkpoint, tmp_path):
    ckpt = Checkpoint(str(tiny_checkpoint))
    ckpt.save(tmp_path / "saved")
    files = {p.name for p in (tmp_path / "saved").iterdir()}
    assert {"config.json", "model.safetensors", "artifact.metadata", "tokenizer.json"} <= files
    again = Checkpoint(str(tmp_path / "saved"))
    assert again.colbert_config.dim == 16 and again.colbert_config.doc_maxlen == 64
    docs, queries = ["some text to encode", "another"], ["a query"]
    torch.testing.assert_close(again.docFromText(docs, keep_dims="flatten")[0],
                               ckpt.docFromText(docs, keep_dims="flatten")[0], atol=0, rtol=0)
    torch.testing.assert_close(again.queryFromText(queries), ckpt.queryFromText(queries), atol=0, rtol=0)


def test_explicit_config_beats_the_checkpoint(tiny_checkpoint):
    ckpt = Checkpoint(str(tiny_checkpoint), colbert_config=ColBERTConfig(doc_maxlen=8, query_maxlen=10))
    assert ckpt.queryFromText(["q"]).shape == (1, 10, 16)
    assert ckpt.docFromText(["word " * 50], keep_dims="flatten")[1] == [8]


def test_rerank_orders_by_maxsim(tiny_checkpoint):
    ckpt = Checkpoint(str(tiny_checkpoint))
    docs = ["alpha beta", "gamma delta epsilon", "alpha"]
    hits = ckpt.rerank("alpha beta", docs, k=2)
    assert len(hits) == 2 and hits[0][1] >= hits[1][1]
    Q = ckpt.queryFromText(["alpha beta"])[0]
    per_doc = ckpt.docFromText(docs, keep_dims=False)
    expected = [float(colbert_score(Q[None], d[None], torch.ones(1, len(d)))) for d in per_doc]
    assert hits[0] == (int(np.argmax(expected)), pytest.approx(max(expected), abs=1e-5))
    from_embeddings, from_text = ckpt.rerank(Q, per_doc, k=10), ckpt.rerank("alpha beta", docs, k=10)
    assert [i for i, _ in from_embeddings] == [i for i, _ in from_text]
    assert [s for _, s in from_embeddings] == pytest.approx([s for _, s in from_text])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ckpt.rerank("q", docs, k=0)


def test_packed_and_padded_scores_agree():
    g = torch.Generator().manual_seed(0)
    Q = torch.nn.functional.normalize(torch.randn(8, 4, generator=g), dim=-1)
    lengths = torch.tensor([3, 1, 5])
    D = torch.nn.functional.normalize(torch.randn(int(lengths.sum()), 4, generator=g), dim=-1)
    padded = torch.zeros(3, 5, 4)
    mask = torch.arange(5) < lengths[:, None]
    padded[mask] = D
    torch.testing.assert_close(colbert_score_packed(Q, D, lengths), colbert_score(Q[None], padded, mask))


@pytest.mark.parametrize("bad", [[None], ["ok", 3], ["ok", b"bytes"]])
def test_non_string_documents_name_the_position(tiny_checkpoint, bad):
    ckpt = Checkpoint(str(tiny_checkpoint))
    position = next(i for i, x in enumerate(bad) if not isinstance(x, str))
    with pytest.raises(TypeError, match=f"position {position}"):
        ckpt.docFromText(bad)
    with pytest.raises(TypeError, match=f"position {position}"):
        ckpt.queryFromText(bad)


def test_single_string_is_rejected_with_advice(tiny_checkpoint):
    with pytest.raises(TypeError, match="wrap it in a list"):
        Checkpoint(str(tiny_checkpoint)).docFromText("just a string")


def test_missing_folder_files_raise_checkpoint_errors(tiny_checkpoint, tmp_path):
    (tiny_checkpoint / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        Checkpoint(str(tiny_checkpoint))


def test_corrupt_weights_name_the_file(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Checkpoint(str(tiny_checkpoint))


def test_head_shape_disagreeing_with_config_is_explained(tiny_checkpoint):
    meta = json.loads((tiny_checkpoint / "artifact.metadata").read_text())
    meta["dim"] = 8
    (tiny_checkpoint / "artifact.metadata").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"linear.weight has shape \(16, 32\).*dim=8"):
        Checkpoint(str(tiny_checkpoint))


def test_unknown_backbone_is_explained(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["model_type"] = "no-such-model"
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unsupported backbone"):
        Checkpoint(str(tiny_checkpoint))


def test_pylate_layout_loads(tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = Path(tiny_checkpoint)
    weights = load_file(folder / "model.safetensors")
    head = weights.pop("linear.weight")
    save_file(weights, folder / "model.safetensors")
    (folder / "artifact.metadata").unlink()
    (folder / "1_Dense").mkdir()
    save_file({"linear.weight": head}, folder / "1_Dense" / "model.safetensors")
    (folder / "1_Dense" / "config.json").write_text(json.dumps({"in_features": 32, "out_features": 16, "bias": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "query_prefix": "[unused0]", "document_prefix": "[unused1]", "query_length": 16, "document_length": 64,
        "attend_to_expansion_tokens": False}))
    ckpt = Checkpoint(str(folder))
    assert ckpt.has_head and ckpt.colbert_config.dim == 16 and ckpt.colbert_config.query_maxlen == 16
    torch.testing.assert_close(ckpt.linear.weight, head)
