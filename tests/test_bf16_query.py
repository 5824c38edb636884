"""The prepacked bf16 query encoder (colbert.modeling.bf16_query) and Checkpoint.query(precision="bf16")."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from colbert.infra.device import cpu_has_native_bf16
from colbert.modeling import bf16_query
from colbert.modeling.bf16_query import Bf16QueryEncoder
from colbert.modeling.checkpoint import Checkpoint

QUERIES = ["protein folding in cells", "heart", "what do late interaction models store for each token of a passage?"]
needs_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16: the prepacked "
                                "encoder is not built here (bf16 queries fall back to autocast, tested below)")


@pytest.fixture
def tiny(_tiny_checkpoint_master):
    return Checkpoint(str(_tiny_checkpoint_master), verbose=0)


def least_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    kept = b.norm(dim=-1) > 0  # the positions that get a vector
    return F.cosine_similarity(a[kept], b[kept], dim=-1).min().item()


@needs_bf16
def test_the_prepacked_encoder_matches_the_models_hidden_states_with_masks_and_batches(tiny):
    encoder = Bf16QueryEncoder.build(tiny)
    assert encoder is not None
    ids, mask = tiny.query_tokenizer.tensorize(QUERIES)
    assert not bool(mask.all())  # [MASK] padding the model does not attend to: the attention mask matters
    with torch.inference_mode():
        want = tiny.bert(ids, attention_mask=mask).last_hidden_state  # (B, Lq, hidden) fp32
        got = encoder(ids, mask)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert F.cosine_similarity(got, want, dim=-1).min().item() > 0.999
    assert (got - want).abs().max().item() < 0.1  # hidden states after a layer norm: O(1) values


@needs_bf16
def test_bf16_queries_use_the_prepacked_encoder_and_stay_close_to_fp32(tiny):
    fp32 = tiny.queryFromText(QUERIES)
    bf16 = tiny.queryFromText(QUERIES, precision="bf16")
    assert isinstance(tiny.__dict__["_bf16_query"][2], Bf16QueryEncoder)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert least_cosine(bf16, fp32) > 0.999
    assert torch.equal(bf16.norm(dim=-1) > 0, fp32.norm(dim=-1) > 0)  # the same positions kept
    assert not torch.equal(bf16, fp32)  # it did run in bf16


@needs_bf16
def test_the_real_minilm_in_bf16_scores_as_fp32_does(minilm_checkpoint):
    checkpoint = Checkpoint(str(minilm_checkpoint), verbose=0)
    docs = checkpoint.docFromText(["Proteins fold into shapes that set their function.", "The heart pumps blood.",
                                   "Late interaction keeps one vector per token."], keep_dims=True)
    fp32 = checkpoint.queryFromText(QUERIES)
    bf16 = checkpoint.queryFromText(QUERIES, precision="bf16")
    assert isinstance(checkpoint.__dict__["_bf16_query"][2], Bf16QueryEncoder)
    assert least_cosine(bf16, fp32) > 0.9995
    for q_fp32, q_bf16 in zip(fp32, bf16):
        exact = (docs @ q_fp32.T).amax(1).sum(-1)  # (ndocs,) MaxSim
        close = (docs @ q_bf16.T).amax(1).sum(-1)
        assert (close - exact).abs().max().item() < 0.05  # scores of ~10-30
        assert torch.equal(close.argsort(), exact.argsort())


@needs_bf16
def test_a_weight_changed_in_place_rebuilds_the_bf16_copy(tiny):
    tiny.queryFromText(QUERIES, precision="bf16")
    first = tiny.__dict__["_bf16_query"][2]
    with torch.no_grad():
        tiny.bert.encoder.layer[0].intermediate.dense.weight.mul_(-1.5)  # as an optimizer step would, in place
    bf16 = tiny.queryFromText(QUERIES, precision="bf16")
    assert tiny.__dict__["_bf16_query"][2] is not first
    assert least_cosine(bf16, tiny.queryFromText(QUERIES)) > 0.999  # the new weights, not the old copy
    tiny.float()  # any _apply drops the copy
    assert "_bf16_query" not in tiny.__dict__


def test_without_native_bf16_queries_fall_back_to_autocast(tiny, monkeypatch, caplog):
    monkeypatch.setattr(bf16_query, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.INFO, logger="colbert.modeling.bf16_query"):
        bf16 = tiny.queryFromText(QUERIES, precision="bf16")
    assert tiny.__dict__["_bf16_query"][2] is None
    assert "no native bf16" in caplog.text
    assert bf16.dtype == torch.float32
    assert least_cosine(bf16, tiny.queryFromText(QUERIES)) > 0.99


def test_a_backbone_other_than_bert_is_not_prepacked(tiny, monkeypatch):
    monkeypatch.setattr(tiny.bert.config, "model_type", "xlm-roberta")
    assert "not BERT" in bf16_query._unsupported(tiny)
    assert Bf16QueryEncoder.build(tiny) is None


@needs_bf16
def test_an_encoder_that_fails_its_probe_is_dropped_with_a_warning(tiny, monkeypatch):
    monkeypatch.setattr(bf16_query, "PROBE_MIN_COSINE", 1.5)  # no cosine passes
    with pytest.warns(RuntimeWarning, match="disagrees with the fp32 model"):
        bf16 = tiny.queryFromText(QUERIES, precision="bf16")
    assert tiny.__dict__["_bf16_query"][2] is None
    assert least_cosine(bf16, tiny.queryFromText(QUERIES)) > 0.99  # autocast answered


def test_an_unknown_precision_is_refused_at_the_door(tiny):
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16'"):
        tiny.queryFromText(QUERIES, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        tiny.query(*tiny.query_tokenizer.tensorize(QUERIES), precision="int8")
    assert "_bf16_query" not in tiny.__dict__
