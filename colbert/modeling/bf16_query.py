"""A bf16 query encoder for CPUs: a BERT forward with its weights converted and prepacked once, for oneDNN.

Queries are short (query_maxlen tokens, 32 by default), so a query's forward pass is dozens of small matrix
products. Under `torch.autocast` each of them first converts its fp32 weight to bf16, on every call, and the
Hugging Face module adds its own per-layer work: for one query that overhead costs more than the arithmetic.
`Bf16QueryEncoder` does the conversion once. It keeps every linear layer's weight in oneDNN's blocked bf16
layout (`torch.ops.mkldnn._reorder_linear_weight`), fuses the query, key and value projections into one product
and the GELU into the intermediate one (`torch.ops.mkldnn._linear_pointwise`). It does what autocast does with
the rest: layer norms, residual sums and the ColBERT head in fp32, the matrix products and attention in bf16.

`Bf16QueryEncoder.build(model)` returns None, with the reason logged, where it does not apply: a backbone other
than BERT's architecture, a torch without oneDNN or its bf16, or a CPU without native bf16 (oneDNN then emulates bf16,
slower than fp32). `Checkpoint.query(..., precision="bf16")` then falls back to bf16 autocast. Built, it checks itself
against the fp32 model on a probe query and is dropped, with a warning, if they disagree (`PROBE_MIN_COSINE`).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from colbert.infra.device import cpu_has_native_bf16

logger = logging.getLogger(__name__)

PROBE_MIN_COSINE = 0.999  # the least cosine to the fp32 model's embedding of any probe token; bf16 stays well above
PACKED_ROWS = 32  # the rows (batch x tokens) oneDNN's weight layout is chosen for: one query of 32 tokens
ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}  # hidden_act -> oneDNN GELU algorithm


def _unsupported(model: Any) -> Optional[str]:
    """Why `model` (a ColBERT) cannot get a Bf16QueryEncoder on this machine, or None if it can."""
    if model.device.type != "cpu":
        return f"the model is on {model.device.type}, not the CPU"
    if not cpu_has_native_bf16():
        return "this CPU has no native bf16 (oneDNN would emulate it, slower than fp32)"
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_linear_pointwise")
            and hasattr(mkldnn, "_reorder_linear_weight")):
        return "this torch build has no oneDNN linear ops"
    config = model.bert.config
    if getattr(config, "model_type", None) != "bert":
        return f"the backbone is {getattr(config, 'model_type', type(model.bert).__name__)!r}, not BERT"
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type={config.position_embedding_type!r}"
    if getattr(config, "hidden_act", None) not in ACTIVATIONS:
        return f"hidden_act={getattr(config, 'hidden_act', None)!r}"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return "the backbone is a decoder"
    return None


def _packed(linear: Any) -> tuple[Tensor, Optional[Tensor]]:
    """A linear layer's weight in oneDNN's bf16 layout, and its bias in bf16."""
    weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().to(torch.bfloat16), PACKED_ROWS)
    return weight, None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)


def _fused_qkv(attention: Any) -> tuple[Tensor, Optional[Tensor]]:
    """The query, key and value projections as one: weight (3 x hidden, hidden), bias (3 x hidden,)."""
    parts = (attention.query, attention.key, attention.value)
    weight = torch.cat([p.weight.detach() for p in parts]).to(torch.bfloat16)
    bias = torch.cat([p.bias.detach() for p in parts]).to(torch.bfloat16)
    return torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_ROWS), bias


class Bf16QueryEncoder:
    """`encoder(input_ids, attention_mask) -> (B, Lq, hidden)` float32: the backbone's last hidden state, computed
    with bf16 matrix products. Build with `Bf16QueryEncoder.build(model)`; it holds its own bf16 copy of the linear
    weights (2 bytes per parameter) and reads the embedding tables and layer norms from the model."""

    def __init__(self, bert: Any) -> None:
        config = bert.config
        self.heads, self.eps = config.num_attention_heads, config.layer_norm_eps
        self.gelu = ACTIVATIONS[config.hidden_act]
        embeddings = bert.embeddings
        self.word = embeddings.word_embeddings.weight.detach()  # (vocab, hidden)
        position = embeddings.position_embeddings.weight.detach()  # (positions, hidden)
        self.position = position + embeddings.token_type_embeddings.weight.detach()[0]  # with segment 0's
        self.norm = _norm(embeddings.LayerNorm)
        self.layers = [{
            "qkv": _fused_qkv(layer.attention.self),
            "attention_out": _packed(layer.attention.output.dense),
            "attention_norm": _norm(layer.attention.output.LayerNorm),
            "intermediate": _packed(layer.intermediate.dense),
            "out": _packed(layer.output.dense),
            "out_norm": _norm(layer.output.LayerNorm),
        } for layer in bert.encoder.layer]

    @classmethod
    def build(cls, model: Any) -> Optional[Bf16QueryEncoder]:
        """The encoder for a ColBERT model, or None (logged at INFO) where it does not apply or fails its probe."""
        reason = _unsupported(model)
        if reason is None:
            try:
                encoder = cls(model.bert)
                reason = encoder._probe(model)
            except (RuntimeError, AttributeError, TypeError) as e:  # a torch or transformers that differs
                reason = f"building it failed: {type(e).__name__}: {e}"
            else:
                if reason is None:
                    return encoder
                warnings.warn(f"The prepacked bf16 query encoder disagrees with the fp32 model ({reason}); "
                              "bf16 queries use torch.autocast instead.", RuntimeWarning, stacklevel=3)
                return None
        logger.info("No prepacked bf16 query encoder (%s); bf16 queries use torch.autocast", reason)
        return None

    def _probe(self, model: Any) -> Optional[str]:
        """None if this encoder's query embeddings of a probe query match the fp32 model's, else what differs."""
        ids, mask = model.query_tokenizer.tensorize(["how do late interaction retrievers score documents?"])
        with torch.inference_mode():
            want = model.query(ids, mask)  # the fp32 forward
            got = model.query_from_hidden(self(ids, mask), ids)
        keep = ids != model.pad_token  # (1, Lq): the positions that get a vector
        cosine = F.cosine_similarity(got[keep], want[keep], dim=-1).min().item()
        return None if cosine >= PROBE_MIN_COSINE else f"least cosine {cosine:.4f} < {PROBE_MIN_COSINE}"

    def __call__(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        linear = torch.ops.mkldnn._linear_pointwise
        B, Lq = input_ids.shape
        with torch.inference_mode():
            x = self.word[input_ids] + self.position[:Lq]  # (B, Lq, hidden)
            hidden = x.size(-1)
            x = F.layer_norm(x, (hidden,), *self.norm, self.eps)
            attend = torch.zeros(B, 1, 1, Lq, dtype=torch.bfloat16)  # (B, 1, 1, Lq): -inf on keys not attended to
            attend.masked_fill_(~attention_mask.bool()[:, None, None, :], float("-inf"))
            for layer in self.layers:
                qkv = linear(x.to(torch.bfloat16), *layer["qkv"], "none", [], "")  # (B, Lq, 3 x hidden)
                q, k, v = qkv.view(B, Lq, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, Lq, h)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (B, heads, Lq, h)
                a = a.transpose(1, 2).reshape(B, Lq, hidden)  # (B, Lq, hidden)
                a = linear(a, *layer["attention_out"], "none", [], "")  # (B, Lq, hidden)
                x = F.layer_norm(torch.add(x, a), (hidden,), *layer["attention_norm"], self.eps)  # fp32 sum
                h = linear(x.to(torch.bfloat16), *layer["intermediate"], "gelu", [], self.gelu)  # (B, Lq, inter)
                h = linear(h, *layer["out"], "none", [], "")  # (B, Lq, hidden)
                x = F.layer_norm(torch.add(x, h), (hidden,), *layer["out_norm"], self.eps)
        return x


def _norm(layer_norm: Any) -> tuple[Tensor, Tensor]:
    return layer_norm.weight.detach(), layer_norm.bias.detach()
