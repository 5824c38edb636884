"""Token ids -> embeddings: encoder + linear head + mask + L2 normalisation, the whole forward in one file.

`ColBERT(name, colbert_config)` loads a checkpoint of any layout colbert.modeling.layouts reads (the reference's,
PyLate's, sentence-transformers 6's, BGE-M3's, Jina-ColBERT-v2's), or a plain encoder. A plain encoder
gets the deterministic head `new_head` (drawn from the fixed seed HEAD_SEED, so every load of the same encoder
embeds alike: an index built with it and a search with it agree); `new_checkpoint` saves an encoder with that head
in the reference layout. `colbert_score` and `colbert_score_packed` are re-exported here, where the
reference keeps them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colbert.errors import CheckpointError
from colbert.infra.config import ColBERTConfig
from colbert.modeling import hf_format
from colbert.modeling.layouts import fit_head, read_layout
from colbert.modeling.scoring import colbert_score, colbert_score_packed, colbert_score_reduce  # noqa: F401
from colbert.modeling.tokenization import DocTokenizer, QueryTokenizer, punctuation_skiplist

logger = logging.getLogger(__name__)

HEAD_SEED = 12345  # the seed of every fresh projection head (new_head)


def new_head(dim: int, hidden: int, seed: int = HEAD_SEED) -> Tensor:
    """A fresh projection head `linear.weight`, the same for the same (dim, hidden, seed) on every machine.

    Drawn as torch draws an `nn.Linear`'s weight (uniform in +-1/sqrt(hidden)) but from its own generator, so the
    global random state is neither read nor changed.

    Shapes: -> (dim, hidden) float32.

    Example:
        >>> torch.equal(new_head(4, 8), new_head(4, 8)), tuple(new_head(4, 8).shape)
        (True, (4, 8))
    """
    generator = torch.Generator().manual_seed(seed)
    bound = hidden ** -0.5
    return torch.empty(dim, hidden).uniform_(-bound, bound, generator=generator)


class ColBERT(nn.Module):
    """The model: `query(ids, mask)` and `doc(ids, mask)` give L2-normalised token embeddings.

    Args:
        name: a checkpoint folder or hub name (reference or PyLate layout), or a backbone name.
        colbert_config: settings that override the checkpoint's `artifact.metadata`.
    """

    def __init__(self, name: Union[str, os.PathLike] = "bert-base-uncased",
                 colbert_config: Optional[ColBERTConfig] = None) -> None:
        super().__init__()
        name = str(name)
        stored, self.encoding = read_layout(name)
        self.colbert_config = ColBERTConfig.from_existing(stored, colbert_config)
        if not self.colbert_config.checkpoint:
            self.colbert_config.configure(checkpoint=name)
        self.name = name
        self.bert = hf_format.load_backbone(name, self.encoding.backbone).float()
        self.raw_tokenizer = hf_format.load_tokenizer(name)
        hidden = self.bert.config.hidden_size
        head = fit_head(name, self.encoding, self.colbert_config.dim)
        self.has_head = head is not None
        self.linear = nn.Linear(hidden, self.colbert_config.dim, bias=head is not None and head.bias is not None)
        self.activation = nn.Tanh() if head is not None and head.activation == "tanh" else nn.Identity()
        if head is None:
            weight = new_head(self.colbert_config.dim, hidden)
        else:
            weight = head.weight
            if tuple(weight.shape) != (self.colbert_config.dim, hidden):
                raise CheckpointError(
                    f"{name}: linear.weight has shape {tuple(weight.shape)} but the config asks for dim="
                    f"{self.colbert_config.dim} over a hidden size of {hidden}; pass "
                    f"ColBERTConfig(dim={weight.shape[0]}) or fix the checkpoint's artifact.metadata."
                )
        with torch.no_grad():
            self.linear.weight.copy_(weight.float())
            if self.linear.bias is not None:
                self.linear.bias.copy_(head.bias.float())
        self.query_tokenizer = QueryTokenizer(self.colbert_config, self.raw_tokenizer, encoding=self.encoding)
        self.doc_tokenizer = DocTokenizer(self.colbert_config, self.raw_tokenizer, encoding=self.encoding)
        skiplist = (punctuation_skiplist(self.raw_tokenizer, self.encoding.skiplist_words)
                    if self.colbert_config.mask_punctuation else [])
        self.register_buffer("skiplist_ids", torch.tensor(skiplist, dtype=torch.long), persistent=False)
        self.pad_token = self.raw_tokenizer.pad_token_id
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.linear.weight.device

    def query(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Shapes: input_ids, attention_mask (B, Lq) -> Q (B, Lq, d), every position kept."""
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        hidden = self.bert(input_ids, attention_mask=attention_mask).last_hidden_state  # (B, Lq, hidden)
        return self.query_from_hidden(hidden, input_ids)

    def query_from_hidden(self, hidden: Tensor, input_ids: Tensor) -> Tensor:
        """`query`'s head, mask and normalisation over the encoder's last hidden state.

        Shapes: hidden (B, Lq, hidden), input_ids (B, Lq) -> Q (B, Lq, d).
        """
        Q = self.activation(self.linear(hidden))  # (B, Lq, d)
        keep = input_ids != self.pad_token  # (B, Lq); queries hold no [PAD] after augmentation
        if self.encoding.skip_first:
            keep[:, 0] = False
        return F.normalize(Q, p=2, dim=2) * keep.unsqueeze(-1)

    def doc_mask(self, input_ids: Tensor) -> Tensor:
        """Which document tokens get a vector: not [PAD], not in the skiplist (nor the first token, for BGE-M3).

        Shapes: input_ids (B, Ld) -> (B, Ld) bool.
        """
        keep = (input_ids != self.pad_token) & ~torch.isin(input_ids, self.skiplist_ids.to(input_ids.device))
        if self.encoding.skip_first:
            keep[:, 0] = False
        return keep

    def kept_positions(self, ids: list[int]) -> list[int]:
        """Positions of one document's token ids that get a vector, in order (as `doc_mask`)."""
        keep = self.doc_mask(torch.tensor([ids], dtype=torch.long))[0]
        return keep.nonzero().squeeze(1).tolist()

    def doc(self, input_ids: Tensor, attention_mask: Tensor, keep_dims: Union[bool, str] = True) -> Any:
        """Document embeddings, zero where [PAD] or punctuation.

        Shapes: input_ids, attention_mask (B, Ld) -> D (B, Ld, d); with keep_dims='return_mask' also keep
        (B, Ld) bool; with keep_dims=False a list of B tensors (n_i, d) holding only the kept rows.
        """
        if keep_dims not in (True, False, "return_mask"):
            raise ValueError(f"keep_dims must be True, False or 'return_mask', got {keep_dims!r}")
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        D = self.bert(input_ids, attention_mask=attention_mask).last_hidden_state  # (B, Ld, hidden)
        D = self.activation(self.linear(D))  # (B, Ld, d)
        keep = self.doc_mask(input_ids)  # (B, Ld)
        D = F.normalize(D, p=2, dim=2) * keep.unsqueeze(-1)  # (B, Ld, d)
        if keep_dims == "return_mask":
            return D, keep
        if keep_dims is False:
            return [d[k] for d, k in zip(D, keep)]
        return D

    def forward(self, Q: tuple[Tensor, Tensor], D: tuple[Tensor, Tensor]) -> Tensor:
        """Training forward of the reference: each query scored against its `nway` documents.

        Shapes: Q ids/mask (B, Lq); D ids/mask (B * nway, Ld) -> scores (B * nway,).
        """
        Q_emb = self.query(*Q)
        D_emb, D_mask = self.doc(*D, keep_dims="return_mask")
        Q_rep = Q_emb.repeat_interleave(self.colbert_config.nway, dim=0)  # (B * nway, Lq, d)
        return colbert_score(Q_rep, D_emb, D_mask, config=self.colbert_config)

    def score(self, Q: Tensor, D_padded: Tensor, D_mask: Tensor) -> Tensor:
        return colbert_score(Q, D_padded, D_mask, config=self.colbert_config)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save in the reference's checkpoint layout (loadable by colbert-ai and by this library)."""
        if str(path).endswith(".dnn"):
            raise ValueError(f"{path}: *.dnn names are the deprecated checkpoint format; save to a folder")
        if not self.encoding.reference_compatible:
            raise CheckpointError(
                f"{self.name} is a {self.encoding.layout} checkpoint whose encoding the reference's layout cannot "
                "hold (a text prompt or no marker, no [MASK] augmentation, a skipped first token, or a head with a "
                "bias or tanh); keep using the original folder, which loads as it is.")
        hf_format.save_checkpoint(path, self.bert, self.linear.weight, self.raw_tokenizer, self.colbert_config)


def new_checkpoint(encoder: Union[str, os.PathLike], out: Union[str, os.PathLike], dim: int = 128,
                   config: Optional[ColBERTConfig] = None, seed: int = HEAD_SEED) -> Path:
    """Make a ColBERT checkpoint from a plain encoder: the encoder plus a deterministic `dim`-wide head (`new_head`).

    The checkpoint is written in the reference's layout (colbert-ai loads it too) and loads identically every time.
    Its head is untrained: retrieval is roughly as good as the encoder's own token embeddings (a random projection
    keeps their similarities), and training it (`Trainer`) improves on that. The command line twin is
    `colbert checkpoint new --from ENCODER OUT --dim 128`.

    Args:
        encoder: a folder or hub name of a transformers encoder (BERT family) without a ColBERT head.
        out: the folder to write; it must not exist or be empty.
        dim: the embedding width (the head maps the encoder's hidden size to it).
        config: other ColBERT settings to store (e.g. `ColBERTConfig(doc_maxlen=300)`); `dim` wins over its dim.
        seed: the head's seed (keep the default to match what loading the plain encoder gives).

    Returns:
        The checkpoint folder.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder; choose another output folder")
    encoder = str(encoder)
    if hf_format.load_head(encoder) is not None:
        raise CheckpointError(f"{encoder} is already a ColBERT checkpoint (it has a linear.weight head); use it as "
                              "it is, or pass the plain encoder it was made from")
    settings = ColBERTConfig.from_existing(config, ColBERTConfig(dim=dim))
    model = ColBERT(encoder, settings)
    if seed != HEAD_SEED:
        with torch.no_grad():
            model.linear.weight.copy_(new_head(dim, model.bert.config.hidden_size, seed))
    model.save(out)
    logger.info("Wrote %s: %s with a fresh %d -> %d head (seed %d)", out, encoder, model.bert.config.hidden_size,
                dim, seed)
    return out
