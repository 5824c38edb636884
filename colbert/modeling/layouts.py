"""Checkpoint layouts other than the reference's, and what each one means for encoding.

`read_layout(name)` looks at a checkpoint's files and returns its stored settings (a ColBERTConfig, or None for a
plain encoder) and an `Encoding`: the few things that a ColBERTConfig cannot say (text prompts instead of marker
tokens, no query augmentation, no vector for the first token, a skiplist of words, a head with a bias or an
activation). Layouts, in the order they are recognised:

* **custom model code** (`auto_map` in config.json, code that transformers runs with `trust_remote_code`): we
  never run code downloaded with a checkpoint. Jina's XLM-RoBERTa (`jinaai/xlm-roberta-flash-implementation`,
  Jina-ColBERT-v2's encoder) is implemented here (colbert.modeling.jina_xlmr): such a checkpoint loads as its
  layout says, with `Encoding.backbone` "jina-xlm-roberta" and its Matryoshka dims (`fit_head`). Any other
  `auto_map` is refused with a CheckpointError.
* **BGE-M3** (FlagEmbedding): `colbert_linear.pt` (a torch state dict, `weight` [dim, hidden] and `bias` [dim])
  beside an XLM-RoBERTa encoder. No markers, no query augmentation, no skiplist; the first token (`<s>`) gets no
  vector; vectors are L2-normalised.
* **the reference's** (`artifact.metadata`, `linear.weight` among the backbone's tensors): hf_format's.
* **PyLate** (`modules.json` listing Transformer + Dense, settings in `config_sentence_transformers.json`:
  `query_prefix`, `document_prefix` inserted as tokens after the first one, `query_length`, `document_length`,
  `attend_to_expansion_tokens`, `do_query_expansion`, `skiplist_words`).
* **sentence-transformers 6 MultiVectorEncoder** (`model_type: MultiVectorEncoder`): the same modules.json, plus
  `MultiVectorMask` (its `skiplist_words`) and `Normalize` modules; the prefixes are `prompts` (text put before the
  input, which is a marker when it is one token of the vocabulary); the query length and augmentation live in
  `query_expansion` of the root `sentence_bert_config.json`, the document length in its `document_length`; a saved
  `truncate_dim` (Matryoshka) keeps the first dims of the head.
* **a plain encoder** (no head): ColBERT draws a fixed head (colbert.modeling.colbert.new_head).

Dense modules are chained in modules.json order and folded into one affine map when no activation sits between
them; the last may apply tanh. Anything else these formats can hold raises CheckpointError naming it.
"""

from __future__ import annotations

import json
import logging
import string
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from colbert.errors import CheckpointError
from colbert.infra.config import ColBERTConfig

logger = logging.getLogger(__name__)

MODULES_FILE = "modules.json"
ST_CONFIG_FILE = "config_sentence_transformers.json"
ST_MODULE_CONFIG_FILE = "sentence_bert_config.json"
BGE_M3_HEAD_FILE = "colbert_linear.pt"
IDENTITY, TANH = "torch.nn.modules.linear.Identity", "torch.nn.modules.activation.Tanh"
KNOWN_MODULES = ("Transformer", "Dense", "MultiVectorMask", "Normalize", "Pooling")


@dataclass
class Head:
    """The projection hidden -> dim: `activation(weight @ x + bias)`. Shapes: weight (dim, hidden), bias (dim,)."""

    weight: Tensor
    bias: Optional[Tensor] = None
    activation: str = "identity"  # or "tanh"


@dataclass
class Encoding:
    """How a checkpoint's text becomes vectors, beyond what its ColBERTConfig says.

    `query_prompt`/`doc_prompt`: None puts the config's marker token after the first token (the reference, PyLate);
    a string is put before the text instead ("" for nothing). `augment_queries`: pad queries with [MASK] to
    query_maxlen (else with [PAD], whose rows are zero). `skip_first`: no vector for the first token (BGE-M3).
    `skiplist_words`: None for the reference's punctuation rule (first id of each character), else the words
    whose token ids documents drop (PyLate's rule). `backbone`: how the encoder loads (hf_format.load_backbone).
    `matryoshka_dims`: widths whose head is the first rows of the stored one (`fit_head`).
    """

    layout: str = "colbert"
    backbone: str = "transformers"  # or "jina-xlm-roberta" (colbert.modeling.jina_xlmr)
    matryoshka_dims: tuple[int, ...] = ()  # head widths other than its full one that the checkpoint allows
    query_prompt: Optional[str] = None
    doc_prompt: Optional[str] = None
    augment_queries: bool = True
    skip_first: bool = False
    skiplist_words: Optional[list[str]] = None
    head: Optional[Head] = field(default=None, repr=False)

    @property
    def reference_compatible(self) -> bool:
        """Whether the reference's layout (and colbert-ai) can hold this encoding: saved by ColBERT.save."""
        head = self.head
        return (self.query_prompt is None and self.doc_prompt is None and self.augment_queries
                and not self.skip_first and (head is None or (head.bias is None and head.activation == "identity")))


def read_layout(name_or_path: str) -> tuple[Optional[ColBERTConfig], Encoding]:
    """The stored settings and the encoding of a checkpoint (see the module docstring for the layouts).

    Raises:
        CheckpointError: custom model code, or a part of a layout that we cannot reproduce, named with what to do.
    """
    from colbert.modeling import hf_format

    name_or_path = hf_format.check_checkpoint_name(str(name_or_path))
    backbone, dims = _custom_code(name_or_path)
    config, encoding = _read_layout(name_or_path)
    encoding.backbone = backbone
    if encoding.head is not None:
        encoding.matryoshka_dims = tuple(d for d in dims if d < encoding.head.weight.shape[0])
    return config, encoding


def fit_head(name_or_path: str, encoding: Encoding, dim: int) -> Optional[Head]:
    """The checkpoint's head for `dim` outputs: the stored one, or its first `dim` rows when `dim` is one of the
    checkpoint's Matryoshka widths (Jina-ColBERT-v2: 96 and 64 beside 128); None without a head.

    Raises:
        CheckpointError: `dim` is neither the head's width nor one of those it allows.
    """
    head = encoding.head
    if head is None or head.weight.shape[0] == dim or not encoding.matryoshka_dims:
        return head  # a width mismatch without Matryoshka dims is ColBERT's shape error
    if dim in encoding.matryoshka_dims:
        return Head(head.weight[:dim], None if head.bias is None else head.bias[:dim], head.activation)
    allowed = [int(head.weight.shape[0]), *encoding.matryoshka_dims]
    raise CheckpointError(
        f"{name_or_path}: its head gives {head.weight.shape[0]} dims but the config asks for dim={dim}; this "
        f"checkpoint allows dim {' or '.join(map(str, allowed))}. Pass ColBERTConfig(dim=...) with one of them "
        "(an index keeps the dim it was built with).")


def _read_layout(name_or_path: str) -> tuple[Optional[ColBERTConfig], Encoding]:
    from colbert.modeling import hf_format

    bge_head = hf_format.resolve_file(name_or_path, BGE_M3_HEAD_FILE)
    if bge_head is not None:
        return _bge_m3(name_or_path, bge_head)
    config = hf_format.load_reference_config(name_or_path)
    if config is not None:
        return config, Encoding("colbert", head=_root_head(name_or_path))
    modules = _read_modules(name_or_path)
    if modules and any(_kind(m) == "Dense" for m in modules):
        return _sentence_transformers(name_or_path, modules)
    return None, Encoding("encoder", head=_root_head(name_or_path))


def _root_head(name_or_path: str) -> Optional[Head]:
    """`linear.weight` among the root weights (the reference's head), or None."""
    from colbert.modeling import hf_format

    weight = hf_format.load_tensor_from_folder(name_or_path, "", hf_format.HEAD_KEY)
    return None if weight is None else Head(weight)


def _custom_code(name_or_path: str) -> tuple[str, tuple[int, ...]]:
    """The backbone kind and Matryoshka dims a config.json's `auto_map` means: ("transformers", ()) without one,
    ("jina-xlm-roberta", dims) for Jina's XLM-RoBERTa; any other custom code raises CheckpointError."""
    from colbert.modeling import hf_format, jina_xlmr

    path = hf_format.resolve_file(name_or_path, hf_format.CONFIG_FILE)
    config = hf_format.read_json(path, "model config") if path is not None else {}
    auto_map = config.get("auto_map")
    if not auto_map:
        return "transformers", ()
    kind = jina_xlmr.jina_code(auto_map)
    if kind == "lora":
        raise jina_xlmr.lora_error(name_or_path, f"its auto_map loads {jina_xlmr.JINA_LORA_CLASS}")
    if kind == "model":
        return "jina-xlm-roberta", jina_xlmr.matryoshka_dims(config)
    code = auto_map.get("AutoModel") if isinstance(auto_map, dict) else auto_map
    raise CheckpointError(
        f"{name_or_path}: its model (model_type {config.get('model_type')!r}, architectures "
        f"{config.get('architectures')}) is custom code that transformers loads with trust_remote_code "
        f"(auto_map -> {code}); this library does not run code that comes with a checkpoint, and implements only "
        f"one such architecture itself (Jina's XLM-RoBERTa, {jina_xlmr.JINA_CODE_REPO}). Use a checkpoint whose "
        "encoder is a transformers architecture (BERT, RoBERTa, XLM-RoBERTa, DeBERTa-v2, ModernBERT, ...), or "
        "convert this one's weights to such an architecture and delete auto_map from config.json."
    )


# --- BGE-M3 --------------------------------------------------------------------------------------------------------

def _bge_m3(name_or_path: str, head_path: str) -> tuple[ColBERTConfig, Encoding]:
    try:
        state = torch.load(head_path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged pickle
        raise CheckpointError(f"Could not read {head_path}: {e}. Re-download BGE-M3's colbert_linear.pt.") from e
    if not isinstance(state, dict) or not isinstance(state.get("weight"), Tensor) or state["weight"].dim() != 2:
        raise CheckpointError(f"{head_path} should hold a state dict with 'weight' [dim, hidden] (BGE-M3's "
                              "colbert_linear); re-download it.")
    bias = state.get("bias")
    head = Head(state["weight"].float(), None if bias is None else bias.float())
    config = ColBERTConfig(checkpoint=name_or_path, dim=int(head.weight.shape[0]), mask_punctuation=False)
    return config, Encoding("bge-m3", query_prompt="", doc_prompt="", augment_queries=False, skip_first=True,
                            head=head)


# --- PyLate and sentence-transformers ------------------------------------------------------------------------------

def _read_modules(name_or_path: str) -> Optional[list[dict[str, Any]]]:
    from colbert.modeling import hf_format

    path = hf_format.resolve_file(name_or_path, MODULES_FILE)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            modules = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}. Re-download or re-save the checkpoint.") from e
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise CheckpointError(f"{path} should list the model's modules as objects; re-download or re-save it.")
    return modules


def _kind(module: dict[str, Any]) -> str:
    """'Dense', 'Transformer', ... from a module's class path ('pylate.models.Dense.Dense' -> 'Dense')."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _sentence_transformers(name_or_path: str, modules: list[dict[str, Any]]) -> tuple[ColBERTConfig, Encoding]:
    from colbert.modeling import hf_format

    unknown = [m.get("type") for m in modules if _kind(m) not in KNOWN_MODULES]
    if unknown:
        raise CheckpointError(f"{name_or_path}: modules.json lists {unknown}, which this library cannot reproduce "
                              f"(it knows {', '.join(KNOWN_MODULES)}). Use a checkpoint without them.")
    st_path = hf_format.resolve_file(name_or_path, ST_CONFIG_FILE)
    st = hf_format.read_json(st_path, "sentence-transformers config") if st_path else {}
    head = _dense_chain(name_or_path, [m for m in modules if _kind(m) == "Dense"])
    settings: dict[str, Any] = {"checkpoint": name_or_path, "dim": int(head.weight.shape[0])}
    if st.get("model_type") == "MultiVectorEncoder" or any(_kind(m) == "MultiVectorMask" for m in modules):
        encoding = _st6(name_or_path, modules, st, settings)
        head = _truncated(name_or_path, head, st.get("truncate_dim"))
        settings["dim"] = int(head.weight.shape[0])
    else:
        encoding = _pylate(name_or_path, st, settings)
    encoding.head = head
    return ColBERTConfig(**settings), encoding


def _pylate(name_or_path: str, st: dict[str, Any], settings: dict[str, Any]) -> Encoding:
    """PyLate (v1-v3): prefixes inserted as tokens after the first, [MASK] expansion, punctuation skiplist."""
    encoding = Encoding("pylate", skiplist_words=list(st.get("skiplist_words") or string.punctuation))
    for key, side, what in (("query_prefix", "query", "query_token_id"), ("document_prefix", "doc", "doc_token_id")):
        prefix = st.get(key, "[Q] " if side == "query" else "[D] ")  # PyLate's defaults
        if prefix:
            settings[what] = prefix
        else:
            setattr(encoding, f"{side}_prompt", "")
    if st.get("query_length"):
        settings["query_maxlen"] = int(st["query_length"])
    if st.get("document_length"):
        settings["doc_maxlen"] = int(st["document_length"])
    if st.get("attend_to_expansion_tokens") is not None:
        settings["attend_to_mask_tokens"] = bool(st["attend_to_expansion_tokens"])
    if st.get("do_query_expansion") is False:
        encoding.augment_queries = False
        settings["attend_to_mask_tokens"] = False
    return encoding


def _st6(name_or_path: str, modules: list[dict[str, Any]], st: dict[str, Any],
         settings: dict[str, Any]) -> Encoding:
    """sentence-transformers 6's MultiVectorEncoder: prompts, query_expansion, MultiVectorMask, Normalize."""
    from colbert.modeling import hf_format

    what = f"{name_or_path} (a sentence-transformers MultiVectorEncoder)"
    if not any(_kind(m) == "Normalize" for m in modules):
        raise CheckpointError(f"{what} has no Normalize module, so its vectors are not unit length; ColBERT's "
                              "MaxSim and index codec need L2-normalised vectors. Add a Normalize module and re-save.")
    if any(_kind(m) == "Pooling" for m in modules):
        raise CheckpointError(f"{what} pools its token vectors into one; it is not a multi-vector model.")
    encoding = Encoding("sentence-transformers", skiplist_words=[])
    prompts = st.get("prompts") or {}
    for side, key, token_key in (("query", "query", "query_token_id"), ("doc", "document", "doc_token_id")):
        prompt = prompts.get(key) or ""
        marker = _single_token(name_or_path, prompt)
        if marker is not None:
            settings[token_key] = marker
        else:
            setattr(encoding, f"{side}_prompt", prompt)
    transformer = next(m for m in modules if _kind(m) == "Transformer") if any(
        _kind(m) == "Transformer" for m in modules) else {"path": ""}
    folder = (transformer.get("path") or "").strip("/")
    path = hf_format.resolve_file(name_or_path, f"{folder}/{ST_MODULE_CONFIG_FILE}" if folder else ST_MODULE_CONFIG_FILE)
    module_config = hf_format.read_json(path, "Transformer module config") if path else {}
    _st6_lengths(what, module_config, encoding, settings)
    for mask in (m for m in modules if _kind(m) == "MultiVectorMask"):
        _st6_mask(name_or_path, what, mask, encoding)
    settings["mask_punctuation"] = bool(encoding.skiplist_words)
    return encoding


def _st6_lengths(what: str, module_config: dict[str, Any], encoding: Encoding, settings: dict[str, Any]) -> None:
    expansion = module_config.get("query_expansion")
    if module_config.get("document_length"):
        settings["doc_maxlen"] = int(module_config["document_length"])
    if expansion is None:
        encoding.augment_queries = False
        if module_config.get("query_length"):
            settings["query_maxlen"] = int(module_config["query_length"])
        return
    if expansion.get("strategy", "fixed") != "fixed":
        raise CheckpointError(f"{what}: query_expansion strategy {expansion.get('strategy')!r} (longer queries kept "
                              "whole) is not supported; only 'fixed' (pad or truncate to one length) is. Set "
                              "strategy 'fixed' in sentence_bert_config.json.")
    if expansion.get("token") not in (None, "[MASK]", "<mask>"):
        raise CheckpointError(f"{what}: query_expansion pads with {expansion['token']!r}; only the tokenizer's mask "
                              "token is supported. Remove 'token' from query_expansion in sentence_bert_config.json.")
    settings["query_maxlen"] = int(expansion.get("length") or 32)
    settings["attend_to_mask_tokens"] = bool(expansion.get("attend", False))


def _st6_mask(name_or_path: str, what: str, module: dict[str, Any], encoding: Encoding) -> None:
    from colbert.modeling import hf_format

    folder = (module.get("path") or "").strip("/")
    path = hf_format.resolve_file(name_or_path, f"{folder}/{hf_format.CONFIG_FILE}")
    config = hf_format.read_json(path, "MultiVectorMask config") if path else {}
    tasks = config.get("skiplist_tasks") or ["document"]
    if config.get("skiplist_words") and list(tasks) != ["document"]:
        raise CheckpointError(f"{what}: its skiplist applies to {tasks}; only documents can drop skiplist tokens "
                              "here (skiplist_tasks ['document']).")
    if config.get("keep_only_token_ids"):
        raise CheckpointError(f"{what}: keep_only_token_ids (image-patch documents) is not supported.")
    encoding.skiplist_words = list(config.get("skiplist_words") or [])


def _single_token(name_or_path: str, prompt: str) -> Optional[str]:
    """The prompt as one token of the vocabulary (whole, or its first word, as sentence-transformers registers it),
    or None when it is text (or empty)."""
    from colbert.modeling import hf_format

    if not prompt.strip():
        return None
    tok = hf_format.load_tokenizer(name_or_path)
    vocab = tok.get_vocab()
    for candidate in (prompt, prompt.split(None, 1)[0]):
        if candidate in vocab and (candidate == prompt or prompt == candidate + " "):
            return candidate
    return None


def _truncated(name_or_path: str, head: Head, dim: Any) -> Head:
    """A Matryoshka head cut to its first `dim` outputs (sentence-transformers 6's saved `truncate_dim`: the first
    dims of each vector, then L2-normalised, which is what the cut head gives)."""
    if dim is None:
        return head
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= head.weight.shape[0]:
        raise CheckpointError(f"{name_or_path}: truncate_dim {dim!r} in {ST_CONFIG_FILE} should be an int in 1.."
                              f"{head.weight.shape[0]} (the Dense output size); fix or remove it.")
    bias = None if head.bias is None else head.bias[:dim]
    return Head(head.weight[:dim], bias, head.activation)


def _dense_chain(name_or_path: str, denses: list[dict[str, Any]]) -> Head:
    """The Dense modules folded into one Head: W = W_n ... W_1, b = W_n(...(b_1)...) + b_n."""
    head: Optional[Head] = None
    for i, module in enumerate(denses):
        layer = _dense(name_or_path, module)
        if head is not None and head.activation != "identity":
            raise CheckpointError(f"{name_or_path}: Dense module {denses[i - 1].get('path')} applies tanh before "
                                  "another Dense; only the last Dense may have an activation.")
        if head is None:
            head = layer
            continue
        bias = layer.weight @ head.bias if head.bias is not None else None
        if layer.bias is not None:
            bias = layer.bias if bias is None else bias + layer.bias
        head = Head(layer.weight @ head.weight, bias, layer.activation)
    assert head is not None  # callers pass at least one Dense
    return head


def _dense(name_or_path: str, module: dict[str, Any]) -> Head:
    from colbert.modeling import hf_format

    folder = (module.get("path") or "").strip("/")
    where = f"{name_or_path}/{folder}"
    path = hf_format.resolve_file(name_or_path, f"{folder}/{hf_format.CONFIG_FILE}")
    config = hf_format.read_json(path, "Dense module config") if path else {}
    if config.get("use_residual"):
        raise CheckpointError(f"{where}: a Dense with use_residual is not supported; use a checkpoint without it.")
    activation = config.get("activation_function", IDENTITY)
    if activation not in (IDENTITY, TANH):
        raise CheckpointError(f"{where}: Dense activation {activation} is not supported (identity and tanh are).")
    weight = hf_format.load_tensor_from_folder(name_or_path, folder, "linear.weight")
    if weight is None:
        raise CheckpointError(f"{where} has no linear.weight in model.safetensors or pytorch_model.bin; "
                              "re-download or re-save the checkpoint.")
    bias = hf_format.load_tensor_from_folder(name_or_path, folder, "linear.bias") if config.get("bias", True) else None
    return Head(weight.float(), None if bias is None else bias.float(), "tanh" if activation == TANH else "identity")
