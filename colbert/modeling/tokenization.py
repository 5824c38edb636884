"""Text -> token ids, exactly as the reference: [Q]/[D] markers after [CLS], [MASK] query augmentation, truncation.

Query (query_maxlen Lq): the tokenizer pads to `Lq - 1` with truncation, the [Q] marker is inserted at position 1
(attention 1), then every [PAD] becomes [MASK]; the attention mask stays 0 on those [MASK]s unless
`attend_to_mask_tokens`. Document (doc_maxlen Ld): truncation to `Ld - 1`, the [D] marker inserted at position 1.
Document vectors drop [PAD] and the punctuation skiplist (the first id of each `string.punctuation` character).

Checkpoints of other layouts (colbert.modeling.layouts.Encoding, passed as `encoding=`) may put a text prompt
before the text instead of a marker (sentence-transformers 6), no marker at all (BGE-M3), and skip the [MASK]
augmentation (queries then keep [PAD], whose vectors are zero).

Empty or whitespace-only texts are accepted, as in the reference: a query becomes [CLS] [Q] [SEP] + [MASK]s, a
document [CLS] [D] [SEP] (three vectors). Non-string inputs raise TypeError naming the position.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from colbert.infra.config import ColBERTConfig

logger = logging.getLogger(__name__)

MAX_FULL_LENGTH_QUERY = 500  # the reference's cap for full_length_search


def check_texts(texts: Any, what: str) -> list[str]:
    """Return `texts` as a list of str, or raise TypeError naming the first bad item and its position."""
    if isinstance(texts, str):
        raise TypeError(f"Expected a list of {what}s, got a single str; wrap it in a list: [text]")
    if isinstance(texts, (Mapping, set, frozenset, bytes)):
        raise TypeError(f"Expected a list of {what}s, got a {type(texts).__name__}; pass a list (for a dict, "
                        "list(d.values()), keeping list(d) to map positions back to its keys)")
    if not isinstance(texts, (list, tuple)):
        try:
            texts = list(texts)
        except TypeError:
            raise TypeError(f"Expected a list of {what}s, got {type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what} at position {i} is {type(text).__name__} ({text!r:.40}), not str")
    return list(texts)


def _load(config: ColBERTConfig) -> Any:
    """The tokenizer of `config.checkpoint` (the reference's tokenizers take only a config)."""
    from colbert.modeling.hf_format import load_tokenizer

    if not config.checkpoint:
        raise ValueError("Pass a tokenizer, or a config whose `checkpoint` names the model to take it from")
    return load_tokenizer(config.checkpoint)


def insert_prefix_token(tensor: Tensor, prefix: int) -> Tensor:
    """Insert one column after the first: [CLS] x y -> [CLS] prefix x y.

    Shapes: tensor (B, L) -> (B, L + 1).
    """
    column = torch.full((tensor.size(0), 1), prefix, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor[:, :1], column, tensor[:, 1:]], dim=1)


REFERENCE_MARKERS = {"query": "[unused0]", "doc": "[unused1]"}  # the reference's default query/doc_token_id


def marker_id(tok: Any, token: str, what: str) -> int:
    """The id of a marker token: `token` itself, else without surrounding spaces (PyLate saves "[Q] ").

    A vocabulary without the reference's default marker ([unused0]/[unused1]: RoBERTa, XLM-RoBERTa, ModernBERT...)
    gets the unknown token's id, as the reference's `convert_tokens_to_ids` gives, so that checkpoints it trained
    on such backbones encode as it did; any other missing marker raises ValueError.
    """
    for candidate in dict.fromkeys((token, token.strip())):
        token_id = tok.convert_tokens_to_ids(candidate)
        if token_id is not None and (token_id != tok.unk_token_id or candidate == tok.unk_token):
            return int(token_id)
    if token == REFERENCE_MARKERS[what] and tok.unk_token_id is not None:
        logger.warning("The tokenizer has no %s token for the %s marker; using its unknown token %s (id %d) as the "
                       "reference does. Set ColBERTConfig(%s_token_id=...) to a token of its vocabulary for a "
                       "distinct marker.", token, what, tok.unk_token, tok.unk_token_id, what)
        return int(tok.unk_token_id)
    raise ValueError(
        f"The tokenizer has no token {token!r} for the {what} marker; set ColBERTConfig({what}_token_id=...) "
        "to a token of its vocabulary (the reference uses [unused0] and [unused1])."
    )


def punctuation_skiplist(tok: Any, words: Optional[Sequence[str]] = None) -> list[int]:
    """The ids masked out of document vectors: the first id of each punctuation character (the reference's rule),
    or with `words`, the id of each word that is one token of the vocabulary (PyLate's and sentence-transformers'
    rule; words it does not know are left out, as sentence-transformers 6 does)."""
    if words is not None:
        ids = [tok.convert_tokens_to_ids(w) for w in words]
        return [int(i) for i, w in zip(ids, words) if i is not None and (i != tok.unk_token_id or w == tok.unk_token)]
    ids = []
    for symbol in string.punctuation:
        encoded = tok.encode(symbol, add_special_tokens=False)
        if encoded:
            ids.append(int(encoded[0]))
    return ids


class QueryTokenizer:
    """The reference's QueryTokenizer: `tensorize(texts)` -> (ids, mask), both (n, query_maxlen)."""

    def __init__(self, config: ColBERTConfig, tokenizer: Any = None, verbose: int = 3, encoding: Any = None) -> None:
        self.tok = tok = tokenizer if tokenizer is not None else _load(config)
        self.config, self.verbose = config, verbose
        self.query_maxlen = config.query_maxlen
        self.background_maxlen = 512 - self.query_maxlen + 1
        # encoding (colbert.modeling.layouts.Encoding): a text prompt instead of the marker, no [MASK] augmentation
        self.prompt = None if encoding is None else encoding.query_prompt
        self.augment = True if encoding is None else encoding.augment_queries
        self.Q_marker_token = config.query_token
        self.Q_marker_token_id = marker_id(tok, config.query_token_id, "query") if self.prompt is None else None
        self.cls_token, self.cls_token_id = tok.cls_token, tok.cls_token_id
        self.sep_token, self.sep_token_id = tok.sep_token, tok.sep_token_id
        self.mask_token, self.mask_token_id = tok.mask_token, tok.mask_token_id
        self.pad_token, self.pad_token_id = tok.pad_token, tok.pad_token_id
        if self.mask_token_id is None and self.augment:
            raise ValueError("The tokenizer has no mask token, which query augmentation needs.")

    def tokenize(self, batch_text: Sequence[str], add_special_tokens: bool = False) -> list[list[str]]:
        """Wordpieces of each query; with add_special_tokens, [CLS] [Q] ... [SEP] then [MASK]s up to
        query_maxlen, untruncated (the reference's)."""
        tokens = [self.tok.tokenize(x, add_special_tokens=False) for x in check_texts(batch_text, "query")]
        if not add_special_tokens:
            return tokens
        if self.prompt is not None:
            ids, _ = self.tensorize(batch_text)
            return [self.tok.convert_ids_to_tokens(row) for row in ids.tolist()]
        fill = lambda n: [self.mask_token] * (self.query_maxlen - (n + 3))  # noqa: E731
        return [[self.cls_token, self.Q_marker_token, *x, self.sep_token, *fill(len(x))] for x in tokens]

    def encode(self, batch_text: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Token ids of each query, as `tokenize` (ids of the markers instead of their names)."""
        ids = self.tok(check_texts(batch_text, "query"), add_special_tokens=False)["input_ids"]
        if not add_special_tokens:
            return ids
        if self.prompt is not None:
            return self.tensorize(batch_text)[0].tolist()
        fill = lambda n: [self.mask_token_id] * (self.query_maxlen - (n + 3))  # noqa: E731
        return [[self.cls_token_id, self.Q_marker_token_id, *x, self.sep_token_id, *fill(len(x))] for x in ids]

    def max_len(self, length: int) -> int:
        return min(MAX_FULL_LENGTH_QUERY, max(self.query_maxlen, length))

    def tensorize(self, batch_text: Sequence[str], bsize: Optional[int] = None, context: Optional[Sequence[str]] = None,
                  full_length_search: bool = False) -> Any:
        """Token ids and attention mask of queries; with `bsize`, a list of (ids, mask) batches."""
        batch_text = check_texts(batch_text, "query")
        max_length = self.query_maxlen
        if full_length_search:
            if len(batch_text) != 1:
                raise ValueError("full_length_search encodes one query at a time; pass a list of one query")
            untruncated = self.tok(batch_text, add_special_tokens=False)["input_ids"]
            max_length = self.max_len(max(len(x) for x in untruncated))
        if self.prompt is None:
            obj = self.tok(batch_text, padding="max_length", truncation=True, return_tensors="pt",
                           max_length=max_length - 1)
            ids = insert_prefix_token(obj["input_ids"], self.Q_marker_token_id)  # (n, Lq)
            mask = insert_prefix_token(obj["attention_mask"], 1)  # (n, Lq)
        else:  # the prompt is text put before the query, as sentence-transformers does
            obj = self.tok([self.prompt + x for x in batch_text], padding="max_length", truncation=True,
                           return_tensors="pt", max_length=max_length)
            ids, mask = obj["input_ids"], obj["attention_mask"]  # (n, Lq)
        if self.augment:
            ids[ids == self.pad_token_id] = self.mask_token_id  # query augmentation
        if context is not None:
            context = check_texts(context, "context")
            if len(context) != len(batch_text):
                raise ValueError(f"{len(context)} contexts for {len(batch_text)} queries; pass one per query")
            obj2 = self.tok(context, padding="longest", truncation=True, return_tensors="pt",
                            max_length=self.background_maxlen)
            ids = torch.cat((ids, obj2["input_ids"][:, 1:]), dim=-1)
            mask = torch.cat((mask, obj2["attention_mask"][:, 1:]), dim=-1)
        if self.config.attend_to_mask_tokens:
            mask[ids == self.mask_token_id] = 1
        if bsize:
            return [(ids[i:i + bsize], mask[i:i + bsize]) for i in range(0, ids.size(0), bsize)]
        return ids, mask


class DocTokenizer:
    """The reference's DocTokenizer: `tensorize(texts)` pads to the longest; `encode_unpadded` for our batching."""

    def __init__(self, config: ColBERTConfig, tokenizer: Any = None, encoding: Any = None) -> None:
        self.tok = tok = tokenizer if tokenizer is not None else _load(config)
        self.config = config
        self.doc_maxlen = config.doc_maxlen
        self.prompt = None if encoding is None else encoding.doc_prompt  # text instead of the marker (layouts.py)
        self.D_marker_token = config.doc_token
        self.D_marker_token_id = marker_id(tok, config.doc_token_id, "doc") if self.prompt is None else None
        self.cls_token, self.cls_token_id = tok.cls_token, tok.cls_token_id
        self.sep_token, self.sep_token_id = tok.sep_token, tok.sep_token_id
        self.pad_token, self.pad_token_id = tok.pad_token, tok.pad_token_id

    def tokenize(self, batch_text: Sequence[str], add_special_tokens: bool = False) -> list[list[str]]:
        """Wordpieces of each document; with add_special_tokens, [CLS] [D] ... [SEP], untruncated (the reference's)."""
        tokens = [self.tok.tokenize(x, add_special_tokens=False) for x in check_texts(batch_text, "document")]
        if not add_special_tokens:
            return tokens
        if self.prompt is not None:
            return [self.tok.convert_ids_to_tokens(x) for x in self.encode_unpadded(batch_text)]
        return [[self.cls_token, self.D_marker_token, *x, self.sep_token] for x in tokens]

    def encode(self, batch_text: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Token ids of each document, as `tokenize` (ids of the markers instead of their names)."""
        ids = self.tok(check_texts(batch_text, "document"), add_special_tokens=False)["input_ids"]
        if not add_special_tokens:
            return ids
        if self.prompt is not None:
            return self.encode_unpadded(batch_text)
        return [[self.cls_token_id, self.D_marker_token_id, *x, self.sep_token_id] for x in ids]

    def encode_unpadded(self, batch_text: Sequence[str]) -> list[list[int]]:
        """Token ids of each document with markers, truncated to doc_maxlen, without padding."""
        batch_text = check_texts(batch_text, "document")
        if not batch_text:
            return []
        if self.prompt is not None:  # text before the document (sentence-transformers), or nothing (BGE-M3)
            return self.tok([self.prompt + x for x in batch_text], padding=False, truncation="longest_first",
                            max_length=self.doc_maxlen, return_attention_mask=False)["input_ids"]
        ids = self.tok(batch_text, padding=False, truncation="longest_first", max_length=self.doc_maxlen - 1,
                       return_attention_mask=False)["input_ids"]
        return [x[:1] + [self.D_marker_token_id] + x[1:] for x in ids]

    def pad(self, ids: Sequence[Sequence[int]], length: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Right-pad a batch to its longest member, or to `length` (at least that long).
        Shapes: -> ids (B, L), mask (B, L)."""
        longest = max(len(x) for x in ids)
        if length is not None and length < longest:
            raise ValueError(f"cannot pad a batch whose longest member has {longest} tokens to {length}")
        length = length or longest
        out = torch.full((len(ids), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.long)
        for row, x in enumerate(ids):
            out[row, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[row, : len(x)] = 1
        return out, mask

    def tensorize(self, batch_text: Sequence[str], bsize: Optional[int] = None) -> Any:
        """As the reference: (ids, mask) padded to the longest; with `bsize`, (batches, reverse_indices) sorted by
        length."""
        ids, mask = self.pad(self.encode_unpadded(batch_text))
        if not bsize:
            return ids, mask
        if ids.size(0) <= bsize:
            order = torch.arange(ids.size(0))
        else:
            order = mask.sum(-1).sort().indices
        ids, mask = ids[order], mask[order]
        batches = [(ids[i:i + bsize], mask[i:i + bsize]) for i in range(0, ids.size(0), bsize)]
        return batches, order.sort().indices


# The reference's submodule paths (colbert.modeling.tokenization.query_tokenization, ...) live in this folder: a
# module with a __path__ is searched for submodules like a package, and `from colbert.modeling.tokenization import
# QueryTokenizer` keeps working.
__path__ = [str(Path(__file__).with_name("tokenization_paths"))]

from colbert.modeling.tokenization_paths.utils import tensorize_triples  # noqa: E402  the reference exports it here
