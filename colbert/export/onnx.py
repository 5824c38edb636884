"""ONNX encoders (`pip install colbert-ai[onnx]`): export a checkpoint's query and document encoders, and encode with
onnxruntime instead of torch.

    from colbert.export.onnx import OnnxCheckpoint, export_onnx
    export_onnx("colbert-ir/colbertv2.0", "colbertv2-onnx")      # or: colbert export onnx CHECKPOINT OUT
    checkpoint = OnnxCheckpoint("colbertv2-onnx")                  # queryFromText / docFromText / rerank, no torch model
    Searcher(index, checkpoint="colbertv2-onnx")                 # a Searcher encoding queries through onnxruntime

OUT holds:

- `query.onnx`, `document.onnx`: inputs `input_ids`, `attention_mask` (int64, (batch, sequence), both axes
  dynamic); output `embeddings` (float32, (batch, sequence, dim)): the backbone, the linear projection and L2
  normalisation. The document model zeroes [PAD] and punctuation rows and also outputs `mask` (bool, (batch,
  sequence)): the rows to keep. `query.int8.onnx`, `document.int8.onnx`: the same, weight matrices dynamically
  quantised to int8 per output channel (`quantize_int8`), unless `quantize=False`.
- the tokenizer's files (`tokenizer.json`, ...), loadable by `tokenizers` or `transformers` in any runtime;
- `colbert_onnx.json`: everything a client needs to reproduce our inputs and outputs (see `sidecar`).
"""

from __future__ import annotations

import json
import logging
import os
import string
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colbert.infra.config import ColBERTConfig
from colbert.modeling.checkpoint import Checkpoint, check_precision
from colbert.modeling.layouts import Encoding
from colbert.modeling.tokenization import DocTokenizer, QueryTokenizer, punctuation_skiplist
from colbert.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

SIDECAR = "colbert_onnx.json"
FORMAT_VERSION = 1
OPSET = 17
FILES = {"query": "query.onnx", "document": "document.onnx"}
INT8_FILES = {"query": "query.int8.onnx", "document": "document.int8.onnx"}
DYNAMIC = {0: "batch", 1: "sequence"}


class _QueryEncoder(nn.Module):
    """ids, mask -> L2-normalised embeddings; every position kept (queries hold [MASK], never [PAD])."""

    def __init__(self, model: Checkpoint) -> None:
        super().__init__()
        self.bert, self.linear = model.bert, model.linear

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        Q = self.bert(input_ids, attention_mask=attention_mask).last_hidden_state  # (B, Lq, hidden)
        return F.normalize(self.linear(Q), p=2, dim=2)  # (B, Lq, d)


class _DocEncoder(nn.Module):
    """ids, mask -> (embeddings zeroed where dropped, keep mask): [PAD] and punctuation are dropped."""

    def __init__(self, model: Checkpoint) -> None:
        super().__init__()
        self.bert, self.linear, self.pad = model.bert, model.linear, int(model.pad_token)
        self.register_buffer("skiplist", model.skiplist_ids.detach().cpu().clone(), persistent=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        D = self.bert(input_ids, attention_mask=attention_mask).last_hidden_state  # (B, Ld, hidden)
        D = F.normalize(self.linear(D), p=2, dim=2)  # (B, Ld, d)
        skipped = (input_ids.unsqueeze(-1) == self.skiplist).any(-1)  # (B, Ld); isin, in ops ONNX has
        keep = (input_ids != self.pad) & ~skipped  # (B, Ld)
        return D * keep.unsqueeze(-1).to(D.dtype), keep


def sidecar(model: Checkpoint, quantized: bool) -> dict:
    """The JSON a client reads to reproduce our inputs and outputs."""
    config, tok = model.colbert_config, model.raw_tokenizer
    q, d = model.query_tokenizer, model.doc_tokenizer
    skiplist = [int(i) for i in model.skiplist_ids.tolist()]
    return {
        "format_version": FORMAT_VERSION,
        "checkpoint": str(model.name),
        "dim": int(config.dim),
        "similarity": "MaxSim: for each query row, the largest dot product with a document row, summed over query "
                      "rows (rows are L2-normalised, so dot = cosine)",
        "tokenizer": {"files": "this folder (tokenizer.json, tokenizer_config.json, ...)",
                      "cls_id": tok.cls_token_id, "sep_id": tok.sep_token_id, "pad_id": tok.pad_token_id,
                      "mask_id": tok.mask_token_id},
        "query": {
            "model": FILES["query"], "int8_model": INT8_FILES["query"] if quantized else None,
            "maxlen": int(config.query_maxlen),
            "marker_token": config.query_token_id, "marker_id": int(q.Q_marker_token_id),
            "recipe": "tokenize with truncation to maxlen - 1 tokens ([CLS] text [SEP]), padded with [PAD] to "
                      "maxlen - 1; insert marker_id after [CLS] (position 1), giving maxlen tokens; the attention "
                      "mask is 1 on [CLS], the marker, the text and [SEP], 0 on the padding; then every [PAD] id is "
                      "replaced by mask_id (query augmentation)" + (
                          "; the attention mask is then set to 1 on those [MASK] tokens too"
                          if config.attend_to_mask_tokens else " and the mask stays 0 there"),
            "attend_to_mask_tokens": bool(config.attend_to_mask_tokens),
            "outputs": {"embeddings": ["batch", "maxlen", config.dim]},
            "keep": "every row (all maxlen rows take part in MaxSim)",
        },
        "document": {
            "model": FILES["document"], "int8_model": INT8_FILES["document"] if quantized else None,
            "maxlen": int(config.doc_maxlen),
            "marker_token": config.doc_token_id, "marker_id": int(d.D_marker_token_id),
            "recipe": "tokenize with truncation to maxlen - 1 tokens ([CLS] text [SEP]); insert marker_id after "
                      "[CLS]; right-pad a batch with pad_id to its longest member; attention mask 1 on tokens, 0 "
                      "on padding",
            "mask_punctuation": bool(config.mask_punctuation),
            "skiplist_ids": skiplist,
            "skiplist_characters": string.punctuation if config.mask_punctuation else "",
            "outputs": {"embeddings": ["batch", "sequence", config.dim], "mask": ["batch", "sequence"]},
            "keep": "rows where mask is true: not [PAD] and not a skiplist id (the others are zero vectors)",
        },
        "config": config.export(),
    }


def export_onnx(checkpoint: Union[str, os.PathLike, Checkpoint], out: Union[str, os.PathLike], *,
                quantize: bool = True, opset: int = OPSET, config: Optional[ColBERTConfig] = None) -> Path:
    """Export a checkpoint's query and document encoders to ONNX in the folder `out` (see the module docstring).

    Args:
        checkpoint: a checkpoint folder or hub name, or a loaded Checkpoint.
        out: the folder to write (made if missing; files of an earlier export are replaced).
        quantize: also write int8 dynamically quantised models.
        opset: the ONNX opset.
        config: overrides of the checkpoint's config (e.g. query_maxlen) recorded in the sidecar.

    Returns:
        `out`.
    """
    model = checkpoint if isinstance(checkpoint, Checkpoint) else \
        Checkpoint(str(checkpoint), colbert_config=config, verbose=0, device="cpu")
    if model.device.type != "cpu":
        raise ValueError(f"export from a CPU Checkpoint (this one is on {model.device}); load it with device='cpu'")
    if not model.encoding.reference_compatible or model.encoding.skiplist_words is not None:
        raise ValueError(f"{model.name} is a {model.encoding.layout} checkpoint: the ONNX export and its sidecar "
                         "describe the reference's encoding (markers, [MASK] augmentation, punctuation skiplist, a "
                         "bias-free head) only; use the Checkpoint itself for this one.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[model.raw_tokenizer.cls_token_id, 1000, 1001, 1002, model.raw_tokenizer.sep_token_id]] * 2)
    mask = torch.ones_like(ids)
    _export(_QueryEncoder(model).eval(), (ids, mask), out / FILES["query"], ["embeddings"], opset)
    _export(_DocEncoder(model).eval(), (ids, mask), out / FILES["document"], ["embeddings", "mask"], opset)
    if quantize:
        for kind in ("query", "document"):
            quantize_int8(out / FILES[kind], out / INT8_FILES[kind])
    model.raw_tokenizer.save_pretrained(str(out))
    atomic_write_json(out / SIDECAR, sidecar(model, quantize))
    logger.info("Exported the encoders of %s to %s", model.name, out)
    return out


def quantize_int8(model: Path, out: Path) -> None:
    """Dynamic int8 quantisation of the weight matrices, one scale per output channel.

    Only MatMuls with a weight (an initializer) are quantised: onnxruntime's default also quantises the attention
    products of two activations (QK^T, AV), which on MiniLM ColBERT halved the per-row cosine margin (0.93 vs 0.99
    to fp32) for little speed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(model), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    nodes = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and any(i in weights for i in n.input)]
    quantize_dynamic(str(model), str(out), weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=nodes)


def _export(module: nn.Module, example: tuple[Tensor, Tensor], path: Path, outputs: list[str], opset: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    axes = {"input_ids": DYNAMIC, "attention_mask": DYNAMIC, **{name: DYNAMIC for name in outputs}}
    try:
        with torch.no_grad():
            torch.onnx.export(module, example, str(tmp), input_names=["input_ids", "attention_mask"],
                              output_names=outputs, dynamic_axes=axes, opset_version=opset, dynamo=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class OnnxCheckpoint(Checkpoint):
    """A Checkpoint that encodes through onnxruntime: `queryFromText`, `docFromText`, `rerank` and what builds on
    them (a Searcher whose `.checkpoint` it is) run without the torch model, which is never loaded.

    Args:
        folder: an `export_onnx` output.
        int8: use the int8 dynamically quantised models.
        providers: onnxruntime execution providers (default CPU).
        colbert_config: overrides of the exported config (e.g. query_maxlen; not dim).
    """

    encodes_with_torch = False

    def __init__(self, folder: Union[str, os.PathLike], int8: bool = False, providers: Optional[list] = None,
                 colbert_config: Optional[ColBERTConfig] = None, verbose: int = 0) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        nn.Module.__init__(self)
        folder = Path(folder)
        meta = _read_sidecar(folder)
        self.name, self.verbose, self.has_head = str(folder), verbose, True
        self.colbert_config = ColBERTConfig.from_existing(ColBERTConfig.from_dict(meta["config"]), colbert_config)
        self.colbert_config.configure(checkpoint=str(folder))
        self.raw_tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.query_tokenizer = QueryTokenizer(self.colbert_config, self.raw_tokenizer)
        self.doc_tokenizer = DocTokenizer(self.colbert_config, self.raw_tokenizer)
        skiplist = punctuation_skiplist(self.raw_tokenizer) if self.colbert_config.mask_punctuation else []
        self.register_buffer("skiplist_ids", torch.tensor(skiplist, dtype=torch.long), persistent=False)
        self.pad_token = self.raw_tokenizer.pad_token_id
        self.encoding = Encoding("colbert")
        files = INT8_FILES if int8 else FILES
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many as torch's (torch.set_num_threads)
        # onnxruntime's threads spin between the operators of a run (fast) and, by default, for a while after it,
        # which takes the cores from the torch work that follows (MaxSim, search): stop them at the end of a run
        options.add_session_config_entry("session.force_spinning_stop", "1")
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {kind: ort.InferenceSession(str(folder / files[kind]), options, providers=providers)
                         for kind in files}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _run(self, kind: str, input_ids: Tensor, attention_mask: Tensor) -> list[np.ndarray]:
        feed = {"input_ids": input_ids.cpu().long().numpy(), "attention_mask": attention_mask.cpu().long().numpy()}
        return self.sessions[kind].run(None, feed)

    def query(self, input_ids: Tensor, attention_mask: Tensor, to_cpu: bool = False,  # type: ignore[override]
              precision: str = "fp32") -> Tensor:
        """As Checkpoint.query; the exported graph runs in its own precision, whatever `precision` asks."""
        check_precision(precision)
        return torch.from_numpy(self._run("query", input_ids, attention_mask)[0])  # (B, Lq, d)

    def doc(self, input_ids: Tensor, attention_mask: Tensor, keep_dims: Union[bool, str] = True,
            to_cpu: bool = False) -> Any:  # type: ignore[override]
        if keep_dims not in (True, False, "return_mask"):
            raise ValueError(f"keep_dims must be True, False or 'return_mask', got {keep_dims!r}")
        D, keep = (torch.from_numpy(x) for x in self._run("document", input_ids, attention_mask))
        if keep_dims == "return_mask":
            return D, keep
        if keep_dims is False:
            return [d[k] for d, k in zip(D, keep)]
        return D

    def to(self, *args: Any, **kwargs: Any) -> OnnxCheckpoint:  # the sessions choose their device
        return self


def _read_sidecar(folder: Path) -> dict:
    path = folder / SIDECAR
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {SIDECAR}: it is not an ONNX export; make one with "
                                "colbert.export.onnx.export_onnx(checkpoint, folder) or `colbert export onnx`")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {meta.get('format_version')!r}; this library reads "
                         f"{FORMAT_VERSION}. Export again with this version.")
    return meta


__all__ = ["OnnxCheckpoint", "SIDECAR", "export_onnx", "quantize_int8", "sidecar"]
