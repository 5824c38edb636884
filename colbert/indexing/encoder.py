"""One chunk of passages -> fp16 embeddings laid end to end + doclens, with bounded memory.

Token ids come first; the number of vectors of each passage follows from its ids alone (tokens that are neither
[PAD] nor punctuation), so the output is allocated once and each length-sorted batch writes its rows in place.

On CPU a batch of `index_bsize` passages is run through the model in slices of at most `CPU_FORWARD_TOKENS`
padded tokens, so activations (attention scores grow with batch x length^2) stay small; GPUs take the whole batch.
With `bf16` (see `colbert.infra.device.indexing_uses_bf16`) the forward runs under bf16 autocast on CPU, faster
on a CPU with native bf16, with vectors close to the fp32 ones (which the index then compresses to `nbits` per
dimension anyway). The platform workarounds (batch lengths, output buffer) come from colbert.indexing.platform;
docs/indexing.md has the measured memory and times.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Optional, Sequence

import torch
from torch import Tensor

from colbert.modeling.checkpoint import Checkpoint, length_sorted_batches
from colbert.indexing.platform import OUTPUT_MIN_BYTES, Workarounds, padded_length  # noqa: F401
from colbert.modeling.pooling import pool_documents, pooled_length
from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

POOL_PASSAGES = 1024  # passages pooled at once (their fp32 copy: 1,024 x 300 x 128 x 4 B = 150 MiB at most)
CPU_FORWARD_TOKENS = 2048  # padded tokens per forward pass on CPU (11 passages at doc_maxlen 180, 4 at 512)


def kept_lengths(checkpoint: Checkpoint, ids: list[list[int]]) -> list[int]:
    """Vectors each passage will have: its tokens minus [PAD] and the punctuation skiplist (Checkpoint.doc_mask)."""
    skip = set(checkpoint.skiplist_ids.tolist()) | {checkpoint.pad_token}
    first = 1 if checkpoint.encoding.skip_first else 0  # BGE-M3 gives its first token no vector
    return [sum(1 for t in x[first:] if t not in skip) for x in ids]


def encode_passages(checkpoint: Checkpoint, passages: Sequence[str], bsize: int,
                    show_progress: bool = True, first_pid: int = 0, bf16: bool = False,
                    pool_factor: int = 1, protected_tokens: int = 0,
                    workarounds: Optional[Workarounds] = None) -> tuple[Tensor, list[int]]:
    """Embeddings of `passages` (fp16, CPU) laid end to end in passage order, and their doclens.

    With `pool_factor` > 1 each passage's vectors are then pooled (colbert.modeling.pooling), a batch of passages
    at a time. `workarounds` (colbert.indexing.platform; None: as the checkpoint's config says,
    `platform_workarounds`) change memory, not the vectors.

    Raises ValueError naming the passage when one has no vector at all (cannot happen with [CLS]/[D]/[SEP]
    markers, but a tokenizer without them could produce it).

    Shapes: -> (sum(doclens), d) float16, doclens list of len(passages).
    """
    if workarounds is None:
        workarounds = Workarounds(checkpoint.colbert_config.platform_workarounds)
    ids = checkpoint.doc_tokenizer.encode_unpadded(passages)
    doclens = kept_lengths(checkpoint, ids)
    empty = next((i for i, n in enumerate(doclens) if n == 0), None)
    if empty is not None:
        raise ValueError(f"passage {first_pid + empty} has no token left after tokenization; remove it or give it text")
    offsets = [0]
    for n in doclens:
        offsets.append(offsets[-1] + n)
    out = workarounds.output_buffer(offsets[-1], checkpoint.colbert_config.dim)
    batches = length_sorted_batches([len(x) for x in ids], bsize)
    on_cpu = checkpoint.device.type == "cpu"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and on_cpu else contextlib.nullcontext()
    doc_maxlen = checkpoint.colbert_config.doc_maxlen
    for batch in progress(batches, desc="Encoding passages", enabled=show_progress, unit="batch"):
        longest = max(len(ids[i]) for i in batch)
        length = workarounds.padded_length(longest, doc_maxlen) if on_cpu else None
        step = max(1, CPU_FORWARD_TOKENS // (length or longest)) if on_cpu else len(batch)
        for first in range(0, len(batch), step):
            part = batch[first:first + step]
            input_ids, attention_mask = checkpoint.doc_tokenizer.pad([ids[i] for i in part], length)
            with autocast:
                D, keep = checkpoint.doc(input_ids, attention_mask, keep_dims="return_mask", to_cpu=True)
            for row, i in enumerate(part):
                out[offsets[i]:offsets[i + 1]] = D[row][keep[row]].half()
    if pool_factor > 1:
        return _pooled(out, doclens, pool_factor, protected_tokens, workarounds)
    return out, doclens


def _pooled(embeddings: Tensor, doclens: list[int], pool_factor: int, protected_tokens: int,
            workarounds: Workarounds) -> tuple[Tensor, list[int]]:
    """`pool_documents` over the chunk in slices of POOL_PASSAGES passages, into one output buffer."""
    offsets = [0]
    for n in doclens:
        offsets.append(offsets[-1] + n)
    new_lens = [pooled_length(n, pool_factor, protected_tokens) for n in doclens]
    out = workarounds.output_buffer(sum(new_lens), embeddings.size(1))
    at = 0
    for first in range(0, len(doclens), POOL_PASSAGES):
        last = min(first + POOL_PASSAGES, len(doclens))
        pooled, lens = pool_documents(embeddings[offsets[first]:offsets[last]], doclens[first:last], pool_factor,
                                      protected_tokens)
        assert lens == new_lens[first:last]  # pooled_length is pool_documents' own count
        out[at:at + pooled.size(0)] = pooled
        at += pooled.size(0)
    return out, new_lens
