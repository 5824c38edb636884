"""The index in memory: LoadedIndex (an index opened and checked), and the IndexHandle that publishes its states.

Letters: C centroids, d dim, P passages, N token embeddings over all chunks.

IndexHandle: the index a Searcher serves, shared with the IndexUpdaters that change it. Readers call `snapshot()`
once per query and read only that snapshot: a state, once published, is never changed, so a search sees one whole
state, the old one or the new one. Writers take the handle's writer lock (`writing()`), build a new state beside the
published one and `publish` it with one reference assignment. The writer side is exclusive within a process; a
second writer waits for the first, for at most `timeout` seconds when given (`IndexUpdater(..., lock_timeout=5.0)`),
then gets IndexBusyError. Writers in other processes are kept apart by the folder lock of colbert.index.versions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from colbert import kernels
from colbert.errors import ColBERTError, IndexFormatError
from colbert.index import format as index_format
from colbert.index import versions
from colbert.index.codec import ResidualCodec
from colbert.index.ivf import ivf_offsets
from colbert.index.residual_embeddings import ResidualEmbeddings
from colbert.index.validate import chunk_code_problems, chunk_offset_problems, ivf_range_problems
from colbert.infra.config import ColBERTConfig

logger = logging.getLogger(__name__)

DocId = Union[int, str]

__all__ = ["DocId", "IndexBusyError", "IndexHandle", "LoadedIndex", "Snapshot"]



@dataclass(eq=False)
class LoadedIndex:
    """THE index in memory, which search reads and edits derive new states from; build it with
    `LoadedIndex.open(path)` (or `from_tensors`), move it with `to(device)`.

    Attributes:
        path: the index folder.
        config: the ColBERTConfig stored in metadata.json.
        metadata: metadata.json as a dict.
        codec: the index's ResidualCodec, with float32 centroids (C, d) (fp16 on disk: the conversion is exact and
            search reads them as float32).
        ivf: int32 pids, list c is `ivf[ivf_offsets[c]:ivf_offsets[c + 1]]`; ivf_lengths: int64 (C,);
            ivf_offsets: int64 (C + 1,).
        doclens: int64 (P,); doc_offsets: int64 (P + 1,), passage p's embeddings are
            `doc_offsets[p]:doc_offsets[p + 1]` in `codes`. A passage with doclen 0 was removed (pids are stable:
            it keeps its position); it is in no inverted list and search never returns it.
        codes: int32 (N,): memory-mapped when the index has one chunk and was opened with mmap=True.
        residual_chunks: uint8 (n_k, d * nbits / 8) per chunk (one tensor when opened with mmap=False).
        chunk_offsets: int64 (len(residual_chunks) + 1,): first embedding of each entry of residual_chunks.
        live: bool (P,), False for removed passages, or None when none was removed; search drops the others.
        doc_ids: the user's document ids in pid order (None for removed passages), or None when they are the pids
            themselves.
        chunk_passages: passages in each chunk on disk, in order; None for an index assembled in memory
            (`from_tensors`), whose rows no longer mirror the chunk files.
        pin: the folder version that was read (colbert.index.versions.Pin), held while the index is open so
            that writers can tell whether it is still current; None when built in memory without one.

    After `to(device)`, what search reads (codec, ivf, ivf_offsets, doc_offsets, codes, residual_chunks, live) is on
    that device; doclens, ivf_lengths, chunk_offsets and the ids stay on the CPU for bookkeeping.
    """

    path: Path
    config: ColBERTConfig
    metadata: dict
    codec: ResidualCodec
    ivf: Tensor
    ivf_lengths: Tensor
    ivf_offsets: Tensor
    doclens: Tensor
    doc_offsets: Tensor
    codes: Tensor
    residual_chunks: list[Tensor]
    chunk_offsets: Tensor
    live: Optional[Tensor] = None
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

    # The codec's parts, and the reference's public ranker attributes that scripts read (searcher.ranker.codec,
    # .doclens, .embeddings).

    @property
    def centroids(self) -> Tensor:
        """float32 (C, d)."""
        return self.codec.centroids

    @property
    def bucket_cutoffs(self) -> Tensor:
        """float32 (2**nbits - 1,)."""
        return self.codec.bucket_cutoffs

    @property
    def bucket_weights(self) -> Tensor:
        """float32 (2**nbits,)."""
        return self.codec.bucket_weights

    @property
    def avg_residual(self) -> Tensor:
        """float32 ()."""
        return self.codec.avg_residual

    @property
    def embeddings(self) -> ResidualEmbeddings:
        """The compressed embeddings (.codes (N,), .residuals (N, d * nbits / 8)), residuals joined in memory."""
        residuals = self.residual_chunks
        return ResidualEmbeddings(self.codes, residuals[0] if len(residuals) == 1 else torch.cat(residuals))

    @property
    def device(self) -> torch.device:
        """Where search reads this index (see `to`)."""
        return self.codes.device

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
        codec = ResidualCodec.from_parts(index_format.read_codec(path, dim, nbits, num_partitions), nbits)
        chunks = _read_chunks(path, meta, dim, nbits, mmap)
        doclens = torch.cat([c.doclens for c in chunks]) if chunks else torch.zeros(0, dtype=torch.int64)
        codes = _join([c.codes for c in chunks], torch.int32)
        _raise_first(chunk_code_problems(path, chunks, num_partitions))
        residuals = [c.residuals for c in chunks]
        if not mmap and len(residuals) > 1:
            residuals = [torch.cat(residuals)]  # one RAM tensor: lookup is then a single gather
        ivf, ivf_lengths = index_format.read_ivf(path, num_partitions)
        _raise_first(ivf_range_problems(path, ivf, doclens.numel()))
        doc_ids = index_format.read_doc_ids(path, doclens.numel(), bool(meta.get(index_format.DOC_IDS_KEY)), doclens)
        return cls.from_tensors(path, meta, codec, ivf, ivf_lengths, doclens, codes, residuals, doc_ids=doc_ids,
                                chunk_passages=[c.metadata["num_passages"] for c in chunks])

    @classmethod
    def from_tensors(cls, path: str | os.PathLike, metadata: dict, codec: ResidualCodec, ivf: Tensor,
                     ivf_lengths: Tensor, doclens: Tensor, codes: Tensor, residual_chunks: Sequence[Tensor],
                     doc_ids: Sequence[DocId | None] | None = None, chunk_passages: Optional[list[int]] = None,
                     pin: Any = None) -> LoadedIndex:
        """An index from tensors already in memory (what IndexUpdater serves between persists); no file is read.

        Args:
            metadata: as metadata.json (its "config" a dict).
            codec: the codec (its centroids are held as float32).
            residual_chunks: the packed residuals of all embeddings, in order, cut anywhere.
            Others: as the attributes of the same names.

        Shapes: ivf (>= sum(ivf_lengths),) int32; ivf_lengths (C,) int64; doclens (P,) int64; codes (N,) int32;
        residual_chunks n_k x (n_k, d * nbits / 8) uint8 with sum(n_k) = N = sum(doclens).
        """
        rows = torch.tensor([len(r) for r in residual_chunks], dtype=torch.int64)
        if codec.centroids.dtype != torch.float32:
            codec = dataclasses.replace(codec, centroids=codec.centroids.float())  # (C, d), exact
        removed = bool((doclens == 0).any())
        index = cls(
            path=Path(path), config=ColBERTConfig.from_dict(metadata["config"]), metadata=metadata, codec=codec,
            ivf=ivf, ivf_lengths=ivf_lengths, ivf_offsets=ivf_offsets(ivf_lengths), doclens=doclens,
            doc_offsets=_offsets(doclens), codes=codes, residual_chunks=list(residual_chunks),
            chunk_offsets=_offsets(rows), live=doclens > 0 if removed else None,
            doc_ids=None if doc_ids is None else list(doc_ids), chunk_passages=chunk_passages, pin=pin,
        )
        if index.doc_ids is not None:
            index._pid_of = {doc_id: pid for pid, doc_id in enumerate(index.doc_ids)
                             if doc_id is not None and doclens[pid] > 0}
        return index

    def to(self, device: torch.device | str) -> LoadedIndex:
        """This index with what search reads on `device` (itself when it is there already).

        Raises:
            ValueError: a GPU was asked for an index memory-mapped in several chunks (open it with mmap=False).
        """
        device = torch.device(device)
        if self.device == device:
            return self
        if device.type != "cpu" and len(self.residual_chunks) != 1:
            raise ValueError(f"{self.path} was opened memory-mapped with {len(self.residual_chunks)} chunks; "
                             f"open it with mmap=False to search on {device}")
        codec = self.codec
        codec = dataclasses.replace(codec, centroids=codec.centroids.to(device),
                                    bucket_cutoffs=codec.bucket_cutoffs.to(device),
                                    bucket_weights=codec.bucket_weights.to(device))
        return dataclasses.replace(
            self, codec=codec, ivf=self.ivf.to(device), ivf_offsets=self.ivf_offsets.to(device),
            doc_offsets=self.doc_offsets.to(device), codes=self.codes.to(device),
            residual_chunks=[r.to(device) for r in self.residual_chunks],
            live=None if self.live is None else self.live.to(device),
        )

    def pid_of(self, doc_id: DocId) -> int:
        """The pid (position in the index) of a user document id; KeyError for a removed one."""
        pid = self.find(doc_id)
        if pid is None:
            raise KeyError(f"document id {doc_id!r} is not in the index at {self.path} ({self.num_passages:,} "
                           "passages)")
        return pid

    def find(self, doc_id: Any) -> Optional[int]:
        """`pid_of` without the KeyError: None for an id the index does not have (or an unhashable value), at the
        cost of a dict lookup, for callers that check many ids (the server)."""
        if self.doc_ids is None:
            if isinstance(doc_id, int) and not isinstance(doc_id, bool) and 0 <= doc_id < self.num_passages \
                    and self.doclens[doc_id] > 0:
                return doc_id
            return None
        try:
            return self._pid_of.get(doc_id)
        except TypeError:  # unhashable
            return None

    def __contains__(self, doc_id: object) -> bool:
        """Whether a passage not removed has this id."""
        return self.find(doc_id) is not None

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
        return *self.rows(rows), lengths

    def rows(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """The codes and packed residuals of embeddings by row (across chunks), on a CPU index.

        Shapes: rows (m,) int64; returns ((m,) int32, (m, d * nbits / 8) uint8).
        """
        return self.codes[rows], self._gather_residuals(rows)

    def residual_views(self, start: int, end: int) -> list[Tensor]:
        """Rows start:end of the packed residuals as views of the tensors holding them, one per tensor crossed (no
        copy). Shapes: each (n_k, d * nbits / 8) uint8, sum(n_k) = end - start."""
        offsets = self.chunk_offsets.tolist()
        return [chunk[max(start, lo) - lo:min(end, hi) - lo]
                for chunk, lo, hi in zip(self.residual_chunks, offsets, offsets[1:]) if lo < end and start < hi]

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

    # ------------------------------------------------------------------------------------ what search reads

    def drop_removed(self, pids: Tensor) -> Tensor:
        """`pids` without removed passages. Shapes: (n,) -> (<= n,)."""
        return pids if self.live is None else pids[self.live[pids.long()]]

    def gather(self, pids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Codes, packed residuals and lengths of `pids` (on this index's device), laid end to end in that order.

        Shapes: pids (n,) int64; returns ((M,) int32, (M, d * nbits / 8) uint8, (n,) int64).
        """
        if len(self.residual_chunks) != 1:
            return self.lookup(pids.cpu())  # on the CPU (`to` refuses other devices)
        codes, lengths = kernels.gather_segments(self.codes, self.doc_offsets, pids)  # (M,), (n,)
        packed, _ = kernels.gather_segments(self.residual_chunks[0], self.doc_offsets, pids)  # (M, d * nbits / 8)
        return codes, packed, lengths

    def maxsim(self, Q: Tensor, pids: Tensor) -> Tensor:
        """MaxSim of one query against the decompressed embeddings of `pids`. Shapes: Q (Lq, d); pids (n,) -> (n,)."""
        codes, packed, lengths = self.gather(pids)
        return kernels.decompress_maxsim(Q, codes, packed, lengths, self.centroids, self.bucket_weights, self.nbits)


def _read_chunks(path: Path, meta: dict, dim: int, nbits: int, mmap: bool) -> list[index_format.Chunk]:
    """Every chunk (each checked against its own files), checking passage offsets are contiguous. The totals in
    metadata.json are checked as loosely as colbert-ai writes them (`validate.totals_problems`)."""
    chunks = [index_format.read_chunk(path, k, dim, nbits, mmap=mmap) for k in range(meta["num_chunks"])]
    _raise_first(chunk_offset_problems(path, meta, [c.metadata for c in chunks]))
    return chunks


def _raise_first(problems: list[str]) -> None:
    """Opening an index stops at the first problem verify_index would list."""
    if problems:
        raise IndexFormatError(f"{problems[0]}. {index_format.REBUILD}")


def _join(tensors: list[Tensor], dtype: torch.dtype) -> Tensor:
    """One tensor of all chunks: a single chunk as it is (memory-mapped or not), several concatenated in RAM."""
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors) if tensors else torch.zeros(0, dtype=dtype)


def _offsets(lengths: Tensor) -> Tensor:
    return torch.nn.functional.pad(torch.cumsum(lengths, 0), (1, 0))


# ------------------------------------------------------------------------------------------------- the handle


class IndexBusyError(ColBERTError, TimeoutError):
    """Another writer held the index handle for longer than this writer was willing to wait."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One published state of an index: never changed after it is published.

    Attributes:
        loaded: the index (its tensors, ids and metadata).
        view: `loaded` on the handle's device, what search reads (`loaded` itself on the CPU).
        generation: 0 for the state the handle was made with, +1 for every publish.
        pending: whether the state holds changes that are not on disk yet (IndexUpdater.persist_to_disk).
        documents: the texts and metadata of this state when its writer supplied them (IndexUpdater: its
            colbert.indexing.documents.Documents, or False when the index stores none); None: read them from the
            index folder when needed.
    """

    loaded: LoadedIndex
    view: LoadedIndex
    generation: int
    pending: bool
    documents: Any = None


class IndexHandle:
    """The published state of an index and the lock its writers share.

    Args:
        loaded: the index as opened.
        device: where readers search: every published state's `view` is `loaded.to(device)`, made by the writer
            (an IndexUpdater keeps residuals in one tensor for a GPU).
        mmap: whether the owner memory-maps the index files (an IndexUpdater reopens a persisted index the same way).
    """

    def __init__(self, loaded: LoadedIndex, device: torch.device | str = "cpu", mmap: bool = True) -> None:
        self.device, self.mmap = torch.device(device), mmap
        self._lock = threading.Lock()
        self._owner: Optional[int] = None  # the thread holding the writer lock
        self._depth = 0  # nested writing() blocks of that thread
        self._edits: Any = None
        self._current = Snapshot(loaded, loaded.to(self.device), generation=0, pending=False)

    def snapshot(self) -> Snapshot:
        """The state published last: read it once and use it for the whole query."""
        return self._current

    def fork(self) -> IndexHandle:
        """A new handle that starts from this one's published state (same view, device and mmap) and then goes its
        own way: for copy-on-write users that prepare a change privately and publish it elsewhere when it is
        whole (the HTTP server)."""
        fork = IndexHandle.__new__(IndexHandle)
        fork.device, fork.mmap = self.device, self.mmap
        fork._lock, fork._owner, fork._depth, fork._edits = threading.Lock(), None, 0, None
        fork._current = self._current
        return fork

    @property
    def edits(self) -> Any:
        """The writers' working state for the published snapshot (IndexUpdater's edit state), shared by every
        writer of this handle so that none loses another's changes; None until a writer publishes one. Only
        inside `writing()`."""
        self._check_writer("read the edit state")
        return self._edits

    @contextmanager
    def writing(self, timeout: Optional[float] = None) -> Iterator[IndexHandle]:
        """Hold the writer lock for the block (re-entrant within one thread).

        Args:
            timeout: seconds to wait for another writer to finish; None waits as long as it takes.

        Raises:
            IndexBusyError: another writer held the lock for longer than `timeout`.
        """
        me = threading.get_ident()
        if self._owner != me:
            if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
                raise IndexBusyError(f"Another writer held the index at {self._current.loaded.path} for more than "
                                     f"{timeout}s; try again later, or wait longer (lock_timeout=...)")
            self._owner = me
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._lock.release()

    def publish(self, loaded: LoadedIndex, *, pending: bool, edits: Any = None, documents: Any = None) -> Snapshot:
        """Make `loaded` the state every later `snapshot()` returns, in one step. Only inside `writing()`.

        Args:
            loaded: the new state; it must not be changed afterwards (searches may be reading it).
            pending: whether it holds changes not yet on disk.
            edits: the writers' working state that produced it (see `edits`), or None.
            documents: see Snapshot.documents.
        """
        self._check_writer("publish")
        view = loaded.to(self.device)  # before the swap: readers never wait for it
        snapshot = Snapshot(loaded, view, self._current.generation + 1, pending, documents)
        self._current, self._edits = snapshot, edits
        return snapshot

    def _check_writer(self, what: str) -> None:
        if self._owner != threading.get_ident():
            raise RuntimeError(f"Only a writer may {what}: use `with handle.writing(): ...`")

    def __repr__(self) -> str:
        snap = self._current
        return (f"IndexHandle({str(snap.loaded.path)!r}, generation={snap.generation}, pending={snap.pending}, "
                f"device={self.device})")
