"""Checkpoint: batched inference over text (eval mode, inference_mode, fp16 autocast on CUDA).

Documents are tokenized without padding, sorted by length and padded per batch, so a batch of short documents
costs what short documents cost (the reference pads every batch to the longest document of the whole call).
Results come back in the caller's order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from colbert.errors import FreshHeadWarning
from colbert.infra.config import ColBERTConfig, check_config
from colbert.infra.device import resolve_device
from colbert.modeling.bf16_query import Bf16QueryEncoder
from colbert.modeling.colbert import HEAD_SEED, ColBERT
from colbert.modeling.pooling import check_pooling, pool_documents
from colbert.modeling.scoring import colbert_score_packed, pad_packed
from colbert.modeling.tokenization import check_texts
from colbert.utils.checks import check_int, check_optional_int, check_path, check_verbose
from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

DEFAULT_QUERY_BSIZE = 128  # queries encoded at once when no bsize is given
PRECISIONS = ("fp32", "bf16")  # of query encoding (Checkpoint.query)


def length_sorted_batches(lengths: Sequence[int], bsize: int) -> list[list[int]]:
    """Positions grouped into batches of similar length (longest first, so memory peaks early).

    Example:
        >>> length_sorted_batches([5, 1, 3, 2], 2)
        [[0, 2], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + bsize] for i in range(0, len(order), bsize)]


class Checkpoint(ColBERT):
    """Easy inference with a ColBERT model: `queryFromText`, `docFromText`, `rerank`.

    Args:
        name: checkpoint folder or hub name.
        colbert_config: overrides of the checkpoint's stored config (e.g. `ColBERTConfig(doc_maxlen=300)`).
        verbose: 0 silences progress bars.
        device: 'cpu', 'cuda', 'mps' or a torch.device (default: CUDA if visible and `gpus != 0`, else CPU).
    """

    encodes_with_torch = True  # False for an export run by another engine (OnnxCheckpoint): precision is its own

    def __init__(self, name: Union[str, os.PathLike], colbert_config: Optional[ColBERTConfig] = None,
                 verbose: int = 3, device: Union[str, torch.device, None] = None) -> None:
        check_path(name, "name")
        check_config(colbert_config, "colbert_config")
        verbose = check_verbose(verbose)
        super().__init__(name, colbert_config)
        positions = getattr(self.bert.config, "max_position_embeddings", None)
        for key in ("doc_maxlen", "query_maxlen"):
            value = getattr(self.colbert_config, key)
            if positions is not None and value > positions:
                raise ValueError(f"{key}={value} exceeds the {positions} positions of {name}'s encoder; set "
                                 f"ColBERTConfig({key}=...) to at most {positions}")
        if not self.has_head:
            warnings.warn(
                f"{name} is a plain encoder without a ColBERT head (linear.weight): using an untrained "
                f"{self.bert.config.hidden_size} -> {self.colbert_config.dim} projection drawn from the fixed seed "
                f"{HEAD_SEED}, the same at every load, so indexes and searches made with it agree. Answers are only "
                "as good as the encoder's own token embeddings: use a trained ColBERT checkpoint (e.g. "
                "colbert-ir/colbertv2.0) or train this one (Trainer). `colbert checkpoint new --from "
                f"{name} OUT` saves it as a checkpoint.", FreshHeadWarning, stacklevel=2)
        self.verbose = verbose
        self.to(resolve_device(self.colbert_config, device))
        self.eval()

    def _context(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.colbert_config.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def query(self, input_ids: Tensor, attention_mask: Tensor, to_cpu: bool = False,  # type: ignore[override]
              precision: str = "fp32") -> Tensor:
        """Query embeddings (B, Lq, d) of token ids (B, Lq).

        precision: "fp32", or "bf16" for faster queries on a CPU with native bf16: the prepacked encoder of
            colbert.modeling.bf16_query where the backbone is BERT's, else bf16 autocast. Its embeddings differ
            slightly from the fp32 ones (docs/modeling.md); they come back in float32. On other devices "bf16"
            changes nothing (CUDA keeps its fp16 autocast).
        """
        check_precision(precision)
        if precision == "bf16" and self.device.type == "cpu":
            return self._query_bf16(input_ids, attention_mask)
        with torch.inference_mode(), self._context():
            Q = super().query(input_ids, attention_mask)
        return Q.cpu() if to_cpu else Q

    def _query_bf16(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        encoder = self._bf16_encoder()
        with torch.inference_mode():
            if encoder is not None:
                return self.query_from_hidden(encoder(input_ids, attention_mask), input_ids)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return super().query(input_ids, attention_mask).float()

    def doc(self, input_ids: Tensor, attention_mask: Tensor, keep_dims: Union[bool, str] = True,
            to_cpu: bool = False) -> Any:  # type: ignore[override]
        """As ColBERT.doc, without gradients; vectors are fp16 on CUDA (as the reference), moved to CPU if asked."""
        with torch.inference_mode(), self._context():
            out = super().doc(input_ids, attention_mask, keep_dims=keep_dims)
        half = self.device.type == "cuda"

        def place(D: Tensor) -> Tensor:
            D = D.half() if half else D
            return D.cpu() if to_cpu else D

        if isinstance(out, list):
            return [place(d) for d in out]
        if isinstance(out, tuple):
            return place(out[0]), (out[1].cpu() if to_cpu else out[1])
        return place(out)

    def _bf16_encoder(self) -> Optional[Bf16QueryEncoder]:
        """The prepacked bf16 copy of the encoder, built at the first bf16 query and again once a weight changed in
        place (a training step, load_state_dict) or moved (`.to`, `.float`: `_apply`)."""
        cached = self.__dict__.get("_bf16_query")
        if cached is not None and [p._version for p in cached[0]] == cached[1]:
            return cached[2]
        params = list(self.bert.parameters())
        encoder = Bf16QueryEncoder.build(self)
        self.__dict__["_bf16_query"] = (params, [p._version for p in params], encoder)
        return encoder

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # .to, .float, .cuda: the bf16 copy is stale
        self.__dict__.pop("_bf16_query", None)
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:  # assign=True replaces the parameters
        self.__dict__.pop("_bf16_query", None)
        return super().load_state_dict(*args, **kwargs)

    def queryFromText(self, queries: Sequence[str], bsize: Optional[int] = None, to_cpu: bool = False,
                      context: Optional[Sequence[str]] = None, full_length_search: bool = False,
                      precision: str = "fp32") -> Tensor:
        """Query embeddings. Shapes: -> (n, query_maxlen, d) (longer with full_length_search or context).

        precision: "fp32" or "bf16", as in `query`.
        """
        queries = check_texts(queries, "query")
        check_optional_int(bsize, "bsize")
        check_precision(precision)
        batches = self.query_tokenizer.tensorize(queries, bsize=bsize or DEFAULT_QUERY_BSIZE, context=context,
                                                 full_length_search=full_length_search)
        if not batches:
            return torch.empty(0, self.colbert_config.query_maxlen, self.colbert_config.dim)
        return torch.cat([self.query(ids, mask, to_cpu=to_cpu, precision=precision) for ids, mask in batches])

    def docFromText(self, docs: Sequence[str], bsize: Optional[int] = None, keep_dims: Union[bool, str] = True,
                    to_cpu: bool = False, showprogress: bool = False, return_tokens: bool = False,
                    pool_factor: int = 1, protected_tokens: int = 0, clustering_mode: str = "hierarchical") -> Any:
        """Document embeddings in the caller's order.

        Returns, by `keep_dims`:
          - True: without bsize, D (n, L, d) zero-padded; with bsize, (D, mask) with mask (n, L) bool.
          - 'flatten': (D (sum(doclens), d) kept vectors only, doclens list[int]).
          - False: a list of n tensors (doclen_i, d).
        With return_tokens, the token ids of each document (list of lists) are appended to the tuple.

        With `pool_factor` > 1 (keep_dims 'flatten' or False), each document keeps max(1, doclen // pool_factor)
        vectors: means of Ward clusters of its vectors, its first `protected_tokens` vectors kept as they are and
        placed last (colbert.modeling.pooling). Pooled vectors no longer stand for tokens, hence not keep_dims=True.
        """
        if not any(keep_dims is v for v in (True, False)) and keep_dims != "flatten":
            raise ValueError(f"keep_dims must be True, False or 'flatten', got {keep_dims!r}")
        docs = check_texts(docs, "document")
        check_optional_int(bsize, "bsize")
        check_pooling(pool_factor, protected_tokens, clustering_mode)
        if pool_factor > 1 and keep_dims is True:
            raise ValueError("Pooled vectors are no longer token positions: with pool_factor > 1 use "
                             "keep_dims='flatten' or keep_dims=False")
        ids = self.doc_tokenizer.encode_unpadded(docs)
        per_doc = self._encode_docs(ids, bsize or self.colbert_config.index_bsize, to_cpu, showprogress)
        if pool_factor > 1:
            per_doc = self._pool(per_doc, pool_factor, protected_tokens)
        extra = (ids,) if return_tokens else ()
        if keep_dims is False:
            return (per_doc, *extra) if return_tokens else per_doc
        if keep_dims == "flatten":
            doclens = [d.size(0) for d in per_doc]
            flat = torch.cat(per_doc) if per_doc else torch.empty(0, self.colbert_config.dim)
            return (flat, doclens, *extra)
        D, mask = self._pad_tokens(ids, per_doc)
        if bsize is None and not return_tokens:
            return D
        return (D, mask, *extra)

    def _encode_docs(self, ids: list[list[int]], bsize: int, to_cpu: bool, showprogress: bool) -> list[Tensor]:
        """Each document's kept vectors, in input order; batches sorted by length."""
        out: list[Optional[Tensor]] = [None] * len(ids)
        batches = length_sorted_batches([len(x) for x in ids], bsize)
        show = showprogress or (self.verbose > 0 and len(ids) > 4 * bsize)
        for batch in progress(batches, desc="Encoding documents", enabled=show):
            input_ids, attention_mask = self.doc_tokenizer.pad([ids[i] for i in batch])
            D, keep = self.doc(input_ids, attention_mask, keep_dims="return_mask", to_cpu=to_cpu)
            for row, i in enumerate(batch):
                out[i] = D[row][keep[row]]
        return out  # type: ignore[return-value]

    def _pool(self, per_doc: list[Tensor], pool_factor: int, protected_tokens: int) -> list[Tensor]:
        if not per_doc:
            return per_doc
        flat, doclens = pool_documents(torch.cat(per_doc), [d.size(0) for d in per_doc], pool_factor,
                                       protected_tokens)
        return list(flat.split(doclens))

    def _pad_tokens(self, ids: list[list[int]], per_doc: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Per-document kept vectors back into token positions. Shapes: -> D (n, L, d), mask (n, L)."""
        input_ids, _ = self.doc_tokenizer.pad(ids)
        keep = self.doc_mask(input_ids)  # (n, L)
        device = per_doc[0].device if per_doc else torch.device("cpu")
        keep = keep.to(device)
        D = torch.zeros(*keep.shape, self.colbert_config.dim, dtype=per_doc[0].dtype if per_doc else torch.float32,
                        device=device)
        if per_doc:
            D[keep] = torch.cat(per_doc)
        return D, keep

    def rerank(self, query: Union[str, Tensor], documents: Any, k: int = 10,
               bsize: Optional[int] = None) -> list[tuple[int, float]]:
        """Score documents against a query by MaxSim, without an index.

        Args:
            query: the query text, or its embeddings (query_maxlen, d).
            documents: a list of texts, a list of per-document embeddings (n_i, d), or a tuple
                (flattened embeddings (N, d), doclens).
            k: how many to return (all when k exceeds the number of documents).

        Returns:
            Up to k (position in `documents`, score) pairs, best first.
        """
        k = check_int(k, "k")
        check_optional_int(bsize, "bsize")
        if isinstance(query, str):
            Q = self.queryFromText([query], bsize=bsize)[0]
        elif isinstance(query, Tensor):
            Q = query.squeeze(0) if query.dim() == 3 and query.size(0) == 1 else query
            self._check_embeddings(Q, "query")
        else:
            raise TypeError(f"query must be a str or a tensor of embeddings, got {type(query).__name__}")
        _check_finite(Q, "the query embeddings")
        D, doclens = self._as_packed(documents, bsize)
        if not doclens.numel():
            return []
        scores = colbert_score_packed(Q.float().cpu(), D.float().cpu(), doclens)
        top = scores.topk(min(k, scores.numel()))
        return [(int(i), float(s)) for s, i in zip(top.values, top.indices)]

    def explain(self, query: str, text: str, full_length_search: bool = False) -> Any:
        """Why `text` scores what it does for `query`: the MaxSim terms, token by token (colbert.modeling.explain).

        Returns:
            An Explanation whose `score` equals `rerank(query, [text])`'s and is the sum of its matches' scores.
        """
        from colbert.modeling.explain import build_explanation, document_tokens, query_tokens

        if not isinstance(query, str) or not isinstance(text, str):
            raise TypeError(f"explain takes a query and a document as str, got {type(query).__name__} and "
                            f"{type(text).__name__}")
        Q = self.queryFromText([query], full_length_search=full_length_search)[0]  # (Lq, d)
        ids, names, spans = document_tokens(self, text)
        input_ids, attention_mask = self.doc_tokenizer.pad([ids])
        D, keep = self.doc(input_ids, attention_mask, keep_dims="return_mask")  # (1, Ld, d), (1, Ld)
        positions = keep[0].nonzero().squeeze(1).tolist()
        return build_explanation(query, text, query_tokens(self, query, full_length_search), names, spans,
                                 positions, Q.cpu(), D[0][keep[0]].cpu())

    def _as_packed(self, documents: Any, bsize: Optional[int]) -> tuple[Tensor, Tensor]:
        """Documents as (D (N, d), doclens (n,)), checked: a tuple (D, doclens), a list of tensors or of texts."""
        if isinstance(documents, tuple) and len(documents) == 2 and isinstance(documents[0], Tensor):
            D, doclens = documents
            self._check_embeddings(D, "documents[0] (the packed document embeddings)")
            try:
                doclens = torch.as_tensor(doclens)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"documents[1] (the doclens) must be a list of ints, got {type(doclens).__name__}") \
                    from None
            if doclens.dim() != 1 or doclens.is_floating_point() or doclens.dtype == torch.bool \
                    or bool((doclens < 0).any()) or int(doclens.sum()) != D.size(0):
                raise ValueError(f"documents[1] must be one int >= 0 per document adding up to the {D.size(0):,} rows "
                                 f"of documents[0], got {doclens.tolist()!r:.80}")
            return D, doclens.long()
        if isinstance(documents, (str, bytes, Mapping, set, frozenset)) or not isinstance(documents, Iterable):
            raise TypeError(f"documents must be a list of texts, a list of embedding tensors or a tuple (D, doclens), "
                            f"got a {type(documents).__name__}" + ("; wrap one text in a list" if isinstance(
                                documents, str) else ""))
        documents = list(documents)
        if documents and any(isinstance(d, Tensor) for d in documents):
            for i, d in enumerate(documents):
                if not isinstance(d, Tensor):
                    raise TypeError(f"documents mixes tensors and {type(d).__name__} (at position {i}); give all "
                                    "texts or all embedding tensors")
                self._check_embeddings(d, f"documents[{i}]")
            return torch.cat(documents), torch.tensor([d.size(0) for d in documents], dtype=torch.long)
        D, doclens = self.docFromText(check_texts(documents, "document"), bsize=bsize, keep_dims="flatten")[:2]
        return D, torch.tensor(doclens, dtype=torch.long)

    def _check_embeddings(self, E: Tensor, what: str) -> None:
        dim = self.colbert_config.dim
        if E.dim() != 2 or E.size(1) != dim or not E.is_floating_point():
            raise ValueError(f"{what} must be a float tensor shaped (n, {dim}), got {E.dtype} {tuple(E.shape)}")


def check_precision(precision: Any) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")


def _check_finite(E: Tensor, what: str) -> None:
    if not bool(torch.isfinite(E).all()):
        raise ValueError(f"{what} hold NaN or infinite values, so nothing can be ranked; check the checkpoint's "
                         "weights (torch.isfinite) or the tensors passed in")


def rerank(checkpoint: Checkpoint, query: Union[str, Tensor], documents: Any, k: int = 10) -> list[tuple[int, float]]:
    """Module-level form of `Checkpoint.rerank`: top-k (position, score) of documents for a query, no index."""
    return checkpoint.rerank(query, documents, k=k)


__all__ = ["Checkpoint", "ColBERTConfig", "length_sorted_batches", "pad_packed", "rerank"]
