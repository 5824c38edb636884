"""Jina XLM-RoBERTa, the encoder of Jina-ColBERT-v2, written here in plain PyTorch: we never run model code that
comes with a checkpoint, so a `config.json` whose `auto_map` names `jinaai/xlm-roberta-flash-implementation`
loads through this module instead of through `trust_remote_code`.

What the published configuration and modeling files define, and this module reproduces:

* **Embeddings**: `embeddings.word_embeddings` plus row 0 of `embeddings.token_type_embeddings` (when
  `type_vocab_size` > 0; token types are all 0), then the LayerNorm `emb_ln`. With `position_embedding_type`
  "rotary" there is no absolute position table.
* **Layers** `encoder.layers.{i}`, post-norm as in BERT: `h = norm1(h + mixer(h))`, `h = norm2(h + mlp(h))`.
  The mixer has one fused projection `mixer.Wqkv` (rows: all heads' queries, then keys, then values) and
  `mixer.out_proj`; the MLP is `mlp.fc1`, GELU (`hidden_act`: exact "gelu", or the tanh form for "gelu_new",
  "gelu_fast", "gelu_pytorch_tanh"), `mlp.fc2`. Every linear layer has a bias.
* **Rotary positions** on queries and keys: the first `rotary_emb_dim` dims of each head (default: the whole
  head), frequencies `rotary_emb_base ** (-2i / rotary_emb_dim)`, positions 0.. from the first token of each
  text, dims paired as halves (`rotary_emb_interleaved` false, the default) or as neighbours (true).
* **Attention** over the tokens whose attention mask is 1 (flash attention's unpadded path drops the others;
  its PyTorch path adds -10000 to their scores), scaled by 1/sqrt(head dim). We use torch's
  scaled_dot_product_attention with a boolean mask; `use_flash_attn` picks a kernel, not a result.

Weights are read from the checkpoint's safetensors or torch file, under `roberta.` (the reference's
`HF_ColBERT` layout, as Jina-ColBERT-v2 ships) or with no prefix. Settings that would change the result and that
we do not reproduce raise CheckpointError naming the key: another `position_embedding_type` (absolute, alibi),
`rotary_emb_scale_base` (XPos), `last_layer_subset`, an odd or too large `rotary_emb_dim`, another activation,
and LoRA task adapters (`modeling_lora` as the AutoModel, or `parametrizations` weights: jina-embeddings-v3).
Keys that do not change token vectors are ignored (dropouts, `use_flash_attn`, fused-kernel switches, `emb_pooler`,
`truncate_dim`, and `lora_*` beside the plain XLMRobertaModel, which does not apply adapters).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colbert.errors import CheckpointError

logger = logging.getLogger(__name__)

JINA_CODE_REPO = "jinaai/xlm-roberta-flash-implementation"
JINA_MODEL_CLASS = "modeling_xlm_roberta.XLMRobertaModel"
JINA_LORA_CLASS = "modeling_lora.XLMRobertaLoRA"
JINA_COLBERT_V2_DIMS = (128, 96, 64)  # Jina-ColBERT-v2's Matryoshka dims (its model card and paper)
GELU_FORMS = {"gelu": "none", "gelu_new": "tanh", "gelu_fast": "tanh", "gelu_pytorch_tanh": "tanh"}


def jina_code(auto_map: Any) -> Optional[str]:
    """What a config.json `auto_map` asks for: "model" (Jina's XLMRobertaModel), "lora" (its LoRA wrapper), or
    None when any entry names other code.

    >>> jina_code({"AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta."
    ...            "XLMRobertaFlashConfig", "AutoModel": "jinaai/xlm-roberta-flash-implementation--"
    ...            "modeling_xlm_roberta.XLMRobertaModel"})
    'model'
    >>> jina_code({"AutoModel": "someone/else--modeling.MyModel"}) is None
    True
    """
    if not isinstance(auto_map, dict) or not auto_map:
        return None
    for value in auto_map.values():
        for ref in (value if isinstance(value, (list, tuple)) else [value]):
            if ref is not None and (not isinstance(ref, str) or ref.split("--")[0].split("@")[0] != JINA_CODE_REPO):
                return None
    model = str(auto_map.get("AutoModel", "")).split("--", 1)[-1]
    return {JINA_MODEL_CLASS: "model", JINA_LORA_CLASS: "lora"}.get(model)


@dataclass
class JinaConfig:
    """The settings of a Jina XLM-RoBERTa, checked (`from_dict`); `to_dict` gives back the config.json read."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float
    type_vocab_size: int
    max_position_embeddings: int
    rotary_emb_base: float
    rotary_emb_dim: int
    rotary_emb_interleaved: bool
    gelu_approximate: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    model_type: str = "xlm-roberta"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> JinaConfig:
        """Raises CheckpointError for a missing size or a setting this module does not reproduce."""

        def refuse(key: str, what: str) -> CheckpointError:
            return CheckpointError(f"{where}: config.json has {key}={raw.get(key)!r}; {what}")

        sizes = {}
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            value = raw.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise refuse(key, "it must be a positive integer (re-download config.json).")
            sizes[key] = value
        if sizes["hidden_size"] % sizes["num_attention_heads"]:
            raise refuse("num_attention_heads", f"it must divide hidden_size {sizes['hidden_size']}.")
        head_dim = sizes["hidden_size"] // sizes["num_attention_heads"]
        if raw.get("position_embedding_type", "rotary") != "rotary":
            raise refuse("position_embedding_type", "only 'rotary' (Jina-ColBERT-v2's) is implemented here; "
                                                    "use a checkpoint with rotary positions.")
        if raw.get("rotary_emb_scale_base") is not None:
            raise refuse("rotary_emb_scale_base", "XPos-scaled rotary positions are not implemented here; "
                                                  "remove the key only if the model was trained without it.")
        if raw.get("last_layer_subset"):
            raise refuse("last_layer_subset", "a last layer computed for a subset of tokens (Wq/Wkv weights) is "
                                              "not implemented here; it is a pre-training setting, set it false.")
        rotary_dim = raw.get("rotary_emb_dim", head_dim)
        if (isinstance(rotary_dim, bool) or not isinstance(rotary_dim, (int, float)) or rotary_dim != int(rotary_dim)
                or not 0 < rotary_dim <= head_dim or int(rotary_dim) % 2):
            raise refuse("rotary_emb_dim", f"it must be an even number of dims in 2..{head_dim} (the head size).")
        act = raw.get("hidden_act", "gelu")
        if act not in GELU_FORMS:
            raise refuse("hidden_act", f"Jina's XLM-RoBERTa uses one of {sorted(GELU_FORMS)}.")
        base = raw.get("rotary_emb_base", 10000.0)
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 0:
            raise refuse("rotary_emb_base", "it must be a positive number.")
        type_vocab = raw.get("type_vocab_size", 1)
        if isinstance(type_vocab, bool) or not isinstance(type_vocab, int) or type_vocab < 0:
            raise refuse("type_vocab_size", "it must be an integer >= 0.")
        return cls(**sizes, layer_norm_eps=float(raw.get("layer_norm_eps", 1e-5)), type_vocab_size=type_vocab,
                   max_position_embeddings=int(raw.get("max_position_embeddings", 8194)),
                   rotary_emb_base=float(base), rotary_emb_dim=int(rotary_dim),
                   rotary_emb_interleaved=bool(raw.get("rotary_emb_interleaved", False)),
                   gelu_approximate=GELU_FORMS[act], raw=dict(raw))


def rotate(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool) -> Tensor:
    """Rotary position embedding of the first 2 * cos.size(-1) dims of each head.

    Shapes: x (B, L, h, d); cos, sin (L, r) with 2r <= d -> (B, L, h, d).
    """
    r = cos.size(-1)
    cos, sin = cos[:, None, :], sin[:, None, :]  # (L, 1, r): broadcast over heads
    rot, rest = x[..., :2 * r], x[..., 2 * r:]
    if interleaved:
        a, b = rot[..., 0::2], rot[..., 1::2]  # (B, L, h, r) each: dims (0, 1), (2, 3), ...
        rot = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    else:
        a, b = rot[..., :r], rot[..., r:]  # dims (i, i + r)
        rot = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    return torch.cat((rot, rest), dim=-1)


class RotaryEmbedding(nn.Module):
    """cos and sin of position x frequency, computed in float32 for each length (no stored buffer)."""

    def __init__(self, dim: int, base: float, interleaved: bool) -> None:
        super().__init__()
        self.dim, self.base, self.interleaved = dim, base, interleaved

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: q, k (B, L, h, d) -> the same, rotated by position."""
        L, device = q.size(1), q.device
        inv_freq = self.base ** -(torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) / self.dim)
        angles = torch.outer(torch.arange(L, device=device, dtype=torch.float32), inv_freq)  # (L, dim / 2)
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        return rotate(q, cos, sin, self.interleaved), rotate(k, cos, sin, self.interleaved)


class Attention(nn.Module):
    def __init__(self, config: JinaConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.rotary_emb = RotaryEmbedding(config.rotary_emb_dim, config.rotary_emb_base, config.rotary_emb_interleaved)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """Shapes: x (B, L, hidden); keep (B, L) bool, the keys attended to -> (B, L, hidden)."""
        B, L, _ = x.shape
        q, k, v = self.Wqkv(x).view(B, L, 3, self.heads, self.head_dim).unbind(2)  # (B, L, h, d) each
        q, k = self.rotary_emb(q, k)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=keep[:, None, None, :])  # (B, h, L, d)
        return self.out_proj(out.transpose(1, 2).reshape(B, L, -1))


class Mlp(nn.Module):
    def __init__(self, config: JinaConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.approximate = config.gelu_approximate

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class Block(nn.Module):
    """Post-norm: attention, add, LayerNorm; MLP, add, LayerNorm."""

    def __init__(self, config: JinaConfig) -> None:
        super().__init__()
        self.mixer, self.mlp = Attention(config), Mlp(config)
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: Tensor, keep: Tensor) -> Tensor:
        h = self.norm1(h + self.mixer(h, keep))
        return self.norm2(h + self.mlp(h))


class Embeddings(nn.Module):
    def __init__(self, config: JinaConfig, vocab_size: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, config.hidden_size)
        if config.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)

    def forward(self, input_ids: Tensor) -> Tensor:
        E = self.word_embeddings(input_ids)  # (B, L, hidden)
        if hasattr(self, "token_type_embeddings"):
            E = E + self.token_type_embeddings.weight[0]  # token type 0 everywhere
        return E


class Encoder(nn.Module):
    def __init__(self, config: JinaConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))


@dataclass
class EncoderOutput:
    last_hidden_state: Tensor


class JinaXLMRobertaModel(nn.Module):
    """Token ids -> last hidden states, as `jinaai/xlm-roberta-flash-implementation`'s XLMRobertaModel (without
    its pooler). Parameter names are the published ones, so `state_dict()` saves as Jina's code loads."""

    base_model_prefix = "roberta"

    def __init__(self, config: JinaConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config, vocab_size)
        self.emb_ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = Encoder(config)

    def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None) -> EncoderOutput:
        """Shapes: input_ids, attention_mask (B, L) -> last_hidden_state (B, L, hidden)."""
        keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        h = self.emb_ln(self.embeddings(input_ids))  # (B, L, hidden)
        for layer in self.encoder.layers:
            h = layer(h, keep)
        return EncoderOutput(h)


def load_jina_xlmr(name_or_path: str) -> JinaXLMRobertaModel:
    """Build the encoder from a checkpoint's config.json and load its weights (float32, eval mode).

    Raises:
        CheckpointError: LoRA adapters, a setting not reproduced here (JinaConfig.from_dict), or missing weights.
    """
    from colbert.modeling import hf_format

    path = hf_format.resolve_file(name_or_path, hf_format.CONFIG_FILE)
    if path is None:
        raise CheckpointError(f"{name_or_path} has no {hf_format.CONFIG_FILE}; pass the checkpoint folder.")
    raw = hf_format.read_json(path, "model config")
    if jina_code(raw.get("auto_map")) == "lora":
        raise lora_error(name_or_path, f"its auto_map loads {JINA_LORA_CLASS}")
    config = JinaConfig.from_dict(raw, str(name_or_path))
    tensors = hf_format.load_all_tensors(name_or_path)
    lora = next((k for k in tensors if ".parametrizations." in k), None)
    if lora is not None:
        raise lora_error(name_or_path, f"its weights hold LoRA parametrizations ({lora})")
    prefix = "roberta." if "roberta.emb_ln.weight" in tensors else ""
    words = tensors.get(prefix + "embeddings.word_embeddings.weight")
    if words is None:
        raise CheckpointError(f"{name_or_path}: no roberta.embeddings.word_embeddings.weight in its weights; the "
                              "file is incomplete or belongs to another architecture. Re-download the checkpoint.")
    model = JinaXLMRobertaModel(config, vocab_size=words.shape[0])
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = [k for k in model.state_dict() if k not in state]
    if missing:
        raise CheckpointError(f"{name_or_path}: {len(missing)} encoder weights are missing from its weight file "
                              f"(first: {prefix}{missing[0]}); re-download the checkpoint.")
    try:
        model.load_state_dict({k: state[k] for k in model.state_dict()})
    except RuntimeError as e:  # a shape that disagrees with config.json
        raise CheckpointError(f"{name_or_path}: its weights do not fit its config.json: {e}") from e
    logger.info("Loaded %s as Jina XLM-RoBERTa (%d layers, hidden %d, rotary dim %d, base %g) without its code",
                name_or_path, config.num_hidden_layers, config.hidden_size, config.rotary_emb_dim,
                config.rotary_emb_base)
    return model.float().eval()


def lora_error(name_or_path: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"{name_or_path}: {why}: LoRA task adapters (lora_adaptations, as jina-embeddings-v3 has) are not "
        "implemented here, and which task's adapter to apply is not in the checkpoint. Use a checkpoint without "
        "adapters (Jina-ColBERT-v2 has none), or merge one task's adapter into the weights and remove the "
        "parametrizations.")


def matryoshka_dims(raw: dict[str, Any]) -> tuple[int, ...]:
    """The head widths a Jina checkpoint allows: config.json's `matryoshka_dimensions`, else Jina-ColBERT-v2's.

    >>> matryoshka_dims({}), matryoshka_dims({"matryoshka_dimensions": [32, 16]})
    ((128, 96, 64), (32, 16))
    """
    dims = raw.get("matryoshka_dimensions")
    if isinstance(dims, list) and dims and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                               for d in dims):
        return tuple(dims)
    return JINA_COLBERT_V2_DIMS


__all__ = ["JinaConfig", "JinaXLMRobertaModel", "jina_code", "load_jina_xlmr", "matryoshka_dims", "rotate"]
