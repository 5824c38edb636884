"""LoadedIndex: an index opened through indexing.format, its files checked against each other.

Letters: C centroids, d dim, P passages, N token embeddings over all chunks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from colbert.errors import IndexFormatError
from colbert.indexing import format as index_format
from colbert.indexing import versions
from colbert.indexing.ivf import ivf_offsets
from colbert.infra.config import ColBERTConfig

logger = logging.getLogger(__name__)

DocId = Union[int, str]


@dataclass(eq=False)
class LoadedIndex:
    """Everything search needs from an index folder; build it with `LoadedIndex.open(path)`.

    Attributes:
        path: the index folder.
        config: the ColBERTConfig stored in metadata.json.
        metadata: metadata.json as a dict.
        centroids: fp16 (C, d). bucket_cutoffs: fp32 (2**nbits - 1,). bucket_weights: fp32 (2**nbits,).
        avg_residual: fp32 ().
        ivf: int32 pids, list c is `ivf[ivf_offsets[c]:ivf_offsets[c + 1]]`; ivf_lengths: int64 (C,);
            ivf_offsets: int64 (C + 1,).
        doclens: int64 (P,); doc_offsets: int64 (P + 1,), passage p's embeddings are
            `doc_offsets[p]:doc_offsets[p + 1]` in `codes`. A passage with doclen 0 was removed (pids are stable:
            it keeps its position); it is in no inverted list and search never returns it.
        codes: int32 (N,): memory-mapped when the index has one chunk and was opened with mmap=True.
        residual_chunks: uint8 (n_k, d * nbits / 8) per chunk (one tensor when opened with mmap=False).
        chunk_offsets: int64 (len(residual_chunks) + 1,): first embedding of each entry of residual_chunks.
        doc_ids: the user's document ids in pid order (None for removed passages), or None when they are the pids
            themselves.
        chunk_passages: passages in each chunk on disk, in order; None for an index assembled in memory
            (`from_tensors`), whose rows no longer mirror the chunk files.
        pin: the folder version that was read (colbert.indexing.versions.Pin), held while the index is open so
            that writers can tell whether it is still current; None when built in memory without one.
    """

    path: Path
    config: ColBERTConfig
    metadata: dict
    centroids: Tensor
    bucket_cutoffs: Tensor
    bucket_weights: Tensor
    avg_residual: Tensor
    ivf: Tensor
    ivf_lengths: Tensor
    ivf_offsets: Tensor
    doclens: Tensor
    doc_offsets: Tensor
    codes: Tensor
    residual_chunks: list[Tensor]
    chunk_offsets: Tensor
    doc_ids: list[DocId] | None = None
    _pid_of: dict[DocId, int] = field(default_factory=dict, repr=False)
    chunk_passages: Optional[list[int]] = None
    pin: Any = field(default=None, repr=False)

    @property
    def nbits(self) -> int:
        return int(self.config.nbits)

    @property
    def dim(self) -> int:
        return int(self.config.dim)

    @property
    def num_passages(self) -> int:
        return self.doclens.numel()

    @property
    def num_embeddings(self) -> int:
        return self.codes.numel()

    @property
    def num_live(self) -> int:
        """Passages not removed (num_passages counts every pid, removed ones included)."""
        return int((self.doclens > 0).sum())

    @property
    def live_pids(self) -> Tensor:
        """The pids of the passages not removed, ascending (int64)."""
        return torch.nonzero(self.doclens > 0).flatten()

    @property
    def live_ids(self) -> list[DocId]:
        """The user ids of the passages not removed, in pid order (doc_ids keeps None where one was removed)."""
        pids = self.live_pids.tolist()
        return pids if self.doc_ids is None else [self.doc_ids[p] for p in pids]

    @property
    def num_partitions(self) -> int:
        return self.centroids.size(0)

    @classmethod
    def open(cls, index_dir: str | os.PathLike, mmap: bool = True) -> LoadedIndex:
        """Read and check every file of the index at `index_dir`.

        The files are read from one version of the folder: when a writer commits a new version meanwhile
        (IndexUpdater.persist_to_disk, a rebuild), they are read again from the new one.

        Args:
            index_dir: the index folder (the one holding metadata.json).
            mmap: memory-map codes and residuals instead of reading them into RAM; residuals are then read
                page by page by `lookup`.

        Raises:
            IndexFormatError: a file is missing, corrupt, or disagrees with the others; the message names it.
        """
        index, pin = versions.read_consistent(index_dir, lambda path: cls._read(path, mmap))
        index.pin = pin
        logger.info("Opened %s: %s passages, %s embeddings, %s partitions, nbits=%d", index.path,
                    f"{index.num_passages:,}", f"{index.num_embeddings:,}", f"{index.num_partitions:,}", index.nbits)
        return index

    @classmethod
    def _read(cls, path: Path, mmap: bool) -> LoadedIndex:
        meta = index_format.read_metadata(path)
        try:
            config = ColBERTConfig.from_dict(meta["config"])
        except (TypeError, ValueError) as e:
            raise IndexFormatError(f"{path / index_format.METADATA_FILE} holds a config that is not valid: {e}. "
                                   f"{index_format.REBUILD}") from e
        dim, nbits, num_partitions = config.dim, config.nbits, meta["num_partitions"]
        codec = index_format.read_codec(path, dim, nbits, num_partitions)
        chunks = _read_chunks(path, meta, dim, nbits, mmap)
        doclens = torch.cat([c.doclens for c in chunks]) if chunks else torch.zeros(0, dtype=torch.int64)
        codes = _join([c.codes for c in chunks], torch.int32)
        _check_codes(path, chunks, num_partitions)
        residuals = [c.residuals for c in chunks]
        if not mmap and len(residuals) > 1:
            residuals = [torch.cat(residuals)]  # one RAM tensor: lookup is then a single gather
        ivf, ivf_lengths = index_format.read_ivf(path, num_partitions)
        if ivf.numel() and (int(ivf.min()) < 0 or int(ivf.max()) >= doclens.numel()):
            raise IndexFormatError(f"{path / index_format.IVF_FILE} holds pids outside [0, {doclens.numel():,}); it "
                                   f"does not belong to this index. {index_format.REBUILD}")
        doc_ids = index_format.read_doc_ids(path, doclens.numel(), bool(meta.get(index_format.DOC_IDS_KEY)), doclens)
        return cls.from_tensors(path, meta, codec, ivf, ivf_lengths, doclens, codes, residuals, doc_ids=doc_ids,
                                chunk_passages=[c.metadata["num_passages"] for c in chunks])

    @classmethod
    def from_tensors(cls, path: str | os.PathLike, metadata: dict, codec: index_format.Codec, ivf: Tensor,
                     ivf_lengths: Tensor, doclens: Tensor, codes: Tensor, residual_chunks: Sequence[Tensor],
                     doc_ids: Sequence[DocId] | None = None, chunk_passages: Optional[list[int]] = None,
                     pin: Any = None) -> LoadedIndex:
        """An index from tensors already in memory (what IndexUpdater serves between persists); no file is read.

        Args:
            metadata: as metadata.json (its "config" a dict).
            residual_chunks: the packed residuals of all embeddings, in order, cut anywhere.
            Others: as the attributes of the same names.

        Shapes: ivf (>= sum(ivf_lengths),) int32; ivf_lengths (C,) int64; doclens (P,) int64; codes (N,) int32;
        residual_chunks n_k x (n_k, d * nbits / 8) uint8 with sum(n_k) = N = sum(doclens).
        """
        rows = torch.tensor([len(r) for r in residual_chunks], dtype=torch.int64)
        index = cls(
            path=Path(path), config=ColBERTConfig.from_dict(metadata["config"]), metadata=metadata,
            centroids=codec.centroids, bucket_cutoffs=codec.bucket_cutoffs, bucket_weights=codec.bucket_weights,
            avg_residual=codec.avg_residual, ivf=ivf, ivf_lengths=ivf_lengths, ivf_offsets=ivf_offsets(ivf_lengths),
            doclens=doclens, doc_offsets=_offsets(doclens), codes=codes, residual_chunks=list(residual_chunks),
            chunk_offsets=_offsets(rows), doc_ids=None if doc_ids is None else list(doc_ids),
            chunk_passages=chunk_passages, pin=pin,
        )
        if index.doc_ids is not None:
            index._pid_of = {doc_id: pid for pid, doc_id in enumerate(index.doc_ids)
                             if doc_id is not None and doclens[pid] > 0}
        return index

    def pid_of(self, doc_id: DocId) -> int:
        """The pid (position in the index) of a user document id; KeyError for a removed one."""
        if self.doc_ids is None:
            if isinstance(doc_id, int) and not isinstance(doc_id, bool) and 0 <= doc_id < self.num_passages \
                    and self.doclens[doc_id] > 0:
                return doc_id
        elif doc_id in self._pid_of:
            return self._pid_of[doc_id]
        raise KeyError(f"document id {doc_id!r} is not in the index at {self.path} ({self.num_passages:,} passages)")

    def id_of(self, pid: int) -> DocId:
        """The user's document id of a pid."""
        if not 0 <= pid < self.num_passages:
            raise IndexError(f"pid {pid} is out of range for an index of {self.num_passages:,} passages")
        return pid if self.doc_ids is None else self.doc_ids[pid]

    def lookup(self, pids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The codes and packed residuals of the given passages, concatenated in the given order.

        Only the rows of those passages are read (memory-mapped files are read page by page).

        Returns:
            (codes, residuals, lengths): passage i of `pids` owns the rows `offsets[i]:offsets[i + 1]` of codes
            and residuals, offsets being the cumulative lengths.

        Shapes: pids (n,) integer; codes (sum(lengths),) int32; residuals (sum(lengths), d * nbits / 8) uint8;
        lengths (n,) int64.
        """
        pids = torch.as_tensor(pids, dtype=torch.int64).reshape(-1)
        if pids.numel() and (int(pids.min()) < 0 or int(pids.max()) >= self.num_passages):
            raise IndexError(f"pids must lie in [0, {self.num_passages:,}); got [{int(pids.min())}, {int(pids.max())}]")
        lengths = self.doclens[pids]  # (n,)
        starts = self.doc_offsets[pids]  # (n,)
        total = int(lengths.sum())
        # Row r of the output is embedding starts[i] + (r - out_start[i]) of passage i.
        out_starts = torch.cumsum(lengths, 0) - lengths  # (n,)
        rows = torch.arange(total) + torch.repeat_interleave(starts - out_starts, lengths)  # (total,)
        codes = self.codes[rows]  # (total,)
        return codes, self._gather_residuals(rows), lengths

    def _gather_residuals(self, rows: Tensor) -> Tensor:
        if len(self.residual_chunks) == 1:
            return self.residual_chunks[0][rows]  # (total, d * nbits / 8)
        width = index_format.packed_dim(self.dim, self.nbits)
        out = torch.empty(rows.numel(), width, dtype=torch.uint8)
        chunk_of = torch.searchsorted(self.chunk_offsets, rows, right=True) - 1  # (total,)
        for k in torch.unique(chunk_of).tolist():
            mask = chunk_of == k
            out[mask] = self.residual_chunks[k][rows[mask] - self.chunk_offsets[k]]
        return out


def _read_chunks(path: Path, meta: dict, dim: int, nbits: int, mmap: bool) -> list[index_format.Chunk]:
    """Every chunk (each checked against its own files), checking passage offsets are contiguous. The totals in
    metadata.json are checked as loosely as colbert-ai writes them (`index_format.totals_problems`)."""
    chunks, passages = [], 0
    for k in range(meta["num_chunks"]):
        chunk = index_format.read_chunk(path, k, dim, nbits, mmap=mmap)
        where = path / index_format.chunk_metadata_file(k)
        if chunk.metadata["passage_offset"] != passages:
            raise IndexFormatError(f"{where} starts at passage {chunk.metadata['passage_offset']:,} but the chunks "
                                   f"before it end at {passages:,}. {index_format.REBUILD}")
        passages += chunk.metadata["num_passages"]
        chunks.append(chunk)
    problems = index_format.totals_problems(path, meta, [c.metadata for c in chunks])
    if problems:
        raise IndexFormatError(f"{problems[0]}. {index_format.REBUILD}")
    return chunks


def _check_codes(path: Path, chunks: list[index_format.Chunk], num_partitions: int) -> None:
    for k, chunk in enumerate(chunks):
        if chunk.codes.numel() and (int(chunk.codes.min()) < 0 or int(chunk.codes.max()) >= num_partitions):
            raise IndexFormatError(f"{path / index_format.codes_file(k)} holds codes outside [0, {num_partitions:,}) "
                                   f"(the number of centroids). {index_format.REBUILD}")


def _join(tensors: list[Tensor], dtype: torch.dtype) -> Tensor:
    """One tensor of all chunks: a single chunk as it is (memory-mapped or not), several concatenated in RAM."""
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors) if tensors else torch.zeros(0, dtype=dtype)


def _offsets(lengths: Tensor) -> Tensor:
    return torch.nn.functional.pad(torch.cumsum(lengths, 0), (1, 0))
