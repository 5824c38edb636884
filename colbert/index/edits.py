"""An index being edited in memory: passages removed and added, the IVF kept consistent, new versions written.

Letters: C centroids, P passages, N token embeddings, w = d * nbits / 8 bytes per packed residual row.

The editor's state is the LoadedIndex that searches read, plus what only a writer needs: how its passages fall into
chunk files (segments) and the metadata of the next version. Every edit makes a new LoadedIndex from the current one
(sharing the tensors it does not change), so a published state is never changed under a search.

A segment is a run of consecutive pids. One read from disk and left untouched remembers its chunk number (`source`)
and is hard-linked when a version is written; a segment with rows removed, or of added passages, is written anew.
Pids are stable, as in the reference (colbert-ai): a removed passage keeps its position with doclen 0 (its
embeddings and IVF entries are gone, its id becomes None), and added passages take the next pids. So colbert-ai,
which returns pids and ignores doc_ids.json, names the same documents as we do.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from colbert.errors import IndexFormatError
from colbert.index import format as index_format
from colbert.index.codec import COMPRESS_BATCH, KMeans, ResidualCodec, fit_codec
from colbert.index.ivf import build_ivf
from colbert.index.loaded import DocId, LoadedIndex
from colbert.index.versions import link_or_copy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """`passages` consecutive passages of the index being edited: the next rows of its chunk arrays (doclens,
    codes, residuals) after those of the segments before it.

    source: the chunk of the base version whose files hold exactly these passages (hard-linked on persist), or None.
    added: passages added since the base version (they fill the last chunk, then new ones, when persisted).
    """

    passages: int
    source: Optional[int] = None
    added: bool = False


class ChunkSpan(NamedTuple):
    """One chunk file of the version being written: `passages` passages from pid `first`, hard-linked from the
    base version's chunk `source` when not None."""

    first: int
    passages: int
    source: Optional[int]


def _segments_of(index: LoadedIndex) -> list[Segment]:
    """One segment per chunk file of an index read from disk; one for an index assembled in memory."""
    if index.chunk_passages is None:
        return [Segment(index.num_passages)]
    return [Segment(passages, source=k) for k, passages in enumerate(index.chunk_passages)]


@dataclass
class IndexState:
    """The index being edited.

    Attributes:
        index: the current state, as searches read it (published as it is; each edit replaces it by a new one).
        segments: how its passages fall into chunk files, in pid order.
        metadata: metadata.json of the next version before its counts (the update counters change in place).
        join: keep every residual in one tensor (searching on a GPU needs that).
        codec_changed: the codec was refitted, so every chunk and the codec files are written anew.
    """

    index: LoadedIndex
    segments: list[Segment]
    metadata: dict
    join: bool = False
    codec_changed: bool = False

    @classmethod
    def from_loaded(cls, index: LoadedIndex, join: bool = False) -> IndexState:
        return cls(index, _segments_of(index), dict(index.metadata), join)

    # ----------------------------------------------------------------------------------------------- edits

    def remove(self, pids: Tensor) -> None:
        """Empty passages (unique int64 pids of live passages): their embeddings and IVF entries go, their doclens
        become 0 and their ids None; every pid stays where it was (the reference's rule)."""
        index = self.index
        keep = torch.ones(index.num_passages, dtype=torch.bool)  # (P,)
        keep[pids] = False
        rows = torch.repeat_interleave(keep, index.doclens)  # (N,) embeddings of kept passages
        segments, residuals = [], []
        for segment, (first, passages, _) in zip(self.segments, self._spans()):
            start, end = int(index.doc_offsets[first]), int(index.doc_offsets[first + passages])
            views = index.residual_views(start, end)
            if bool(keep[first:first + passages].all()):  # an untouched segment keeps its rows where they are
                segments.append(segment)
                residuals.extend(views)
                continue
            segments.append(replace(segment, source=None))
            for view in views:  # the segment's kept rows, copied
                residuals.append(view[rows[start:start + len(view)]])
                start += len(view)
        ids = self._ids()
        for pid in pids.tolist():
            ids[pid] = None
        ivf, lengths = self._ivf()
        list_of = torch.repeat_interleave(torch.arange(self.index.num_partitions), lengths)  # (M,)
        alive = keep[ivf.long()]  # (M,)
        self.segments = segments
        self._replace(index.doclens * keep, index.codes[rows], residuals, ivf[alive],  # still sorted within lists
                      torch.bincount(list_of[alive], minlength=self.index.num_partitions), ids)

    def append(self, codes: Tensor, residuals: Tensor, doclens: Sequence[int], ids: Sequence[DocId]) -> None:
        """Add passages after the last pid. Shapes: codes (n,) int32; residuals (n, w) uint8; doclens (q,)."""
        index = self.index
        doclens = torch.as_tensor(list(doclens), dtype=torch.int64)  # (q,)
        first, q = index.num_passages, doclens.numel()
        chunks = [*index.residual_chunks, residuals]
        if self.segments and self.segments[-1].added:  # added passages stay one tensor (joined), as they were
            start = int(index.doc_offsets[self._spans()[-1].first])
            added = index.residual_views(start, index.num_embeddings)
            chunks = [*index.residual_views(0, start), torch.cat([*added, residuals])]
            self.segments[-1] = Segment(self.segments[-1].passages + q, added=True)
        else:
            self.segments.append(Segment(q, added=True))
        local = torch.repeat_interleave(torch.arange(q), doclens)  # (n,) passage of each embedding
        keys = torch.unique(codes.long() * q + local)  # (m,) distinct (centroid, passage), sorted by centroid
        lists, pids = keys // q, keys % q + first
        ivf, lengths = self._ivf()
        list_of = torch.repeat_interleave(torch.arange(self.index.num_partitions), lengths)  # (M,)
        order = torch.argsort(torch.cat([list_of, lists]), stable=True)  # old pids first within a list: sorted
        self._replace(torch.cat([index.doclens, doclens]), torch.cat([index.codes, codes.to(torch.int32)]),
                      chunks, torch.cat([ivf.long(), pids])[order].to(torch.int32),
                      lengths + torch.bincount(lists, minlength=self.index.num_partitions), [*self._ids(), *ids])

    def recompress(self, new: ResidualCodec, old: ResidualCodec) -> None:
        """Re-encode every embedding with a new codec: decompress with the old one, compress with the new one."""
        index = self.index
        codes = torch.empty(index.num_embeddings, dtype=torch.int32)
        residuals = []
        for first, passages, _ in self._spans():
            start, end = int(index.doc_offsets[first]), int(index.doc_offsets[first + passages])
            packed = torch.empty(end - start, new.dim * new.nbits // 8, dtype=torch.uint8)
            for at in range(start, end, COMPRESS_BATCH):  # blocks from each segment's start, as always
                block = slice(at, min(at + COMPRESS_BATCH, end))
                embeddings = old.decompress(*index.rows(torch.arange(block.start, block.stop)))  # (b, d)
                codes[block], packed[block.start - start:block.stop - start] = new.compress(embeddings)
            residuals.append(packed)
        self.segments = [replace(segment, source=None) for segment in self.segments]
        self.codec_changed = True
        ivf, lengths = build_ivf(codes, index.doclens, new.centroids.size(0))
        self._replace(index.doclens, codes, residuals, ivf[: int(lengths.sum())], lengths, self._ids(), codec=new)

    def _replace(self, doclens: Tensor, codes: Tensor, residuals: list[Tensor], ivf: Tensor, ivf_lengths: Tensor,
                 ids: list[Optional[DocId]], codec: Optional[ResidualCodec] = None) -> None:
        """Make the next state: a new LoadedIndex (the one before it stays whole for the searches reading it)."""
        if self.join and len(residuals) > 1:
            residuals = [torch.cat(residuals)]
        codec = codec or self.index.codec
        metadata = self._metadata(codes.numel(), int((doclens > 0).sum()), codec.centroids.size(0))
        self.index = LoadedIndex.from_tensors(self.index.path, metadata, codec, ivf, ivf_lengths, doclens, codes,
                                              residuals, doc_ids=_stored(ids), pin=self.index.pin)

    def _ids(self) -> list[Optional[DocId]]:
        """The id of every pid, None for a removed passage (a new list)."""
        index = self.index
        ids = list(range(index.num_passages)) if index.doc_ids is None else list(index.doc_ids)
        for pid in (index.doclens == 0).nonzero().flatten().tolist():
            ids[pid] = None  # removed (colbert-ai's updater leaves doclen 0 behind)
        return ids

    def _ivf(self) -> tuple[Tensor, Tensor]:
        """The inverted lists unpadded (list c is ivf[offsets[c]:offsets[c + 1]], sorted pids) and their lengths.
        Shapes: ivf (sum(ivf_lengths),) int32; ivf_lengths (C,) int64."""
        index = self.index
        return index.ivf[: int(index.ivf_lengths.sum())], index.ivf_lengths  # without the reference's padding

    # ----------------------------------------------------------------------------------------------- views

    def _metadata(self, num_embeddings: int, num_live: int, num_partitions: int) -> dict:
        n = num_embeddings
        return {**copy.deepcopy(self.metadata), "num_chunks": len(self.segments), "num_partitions": num_partitions,
                "num_embeddings": n, "avg_doclen": n / max(num_live, 1)}

    def current_metadata(self) -> dict:
        """metadata.json of this state: a copy, which later edits of the state leave alone."""
        index = self.index
        return self._metadata(index.num_embeddings, index.num_live, index.num_partitions)

    def stored_ids(self) -> Optional[list[Optional[DocId]]]:
        """The ids to store in doc_ids.json (null for removed passages), or None when every passage's id is its
        pid (removed ones included), as for the reference."""
        return _stored(self._ids())

    # ----------------------------------------------------------------------------------------------- writing

    def _spans(self) -> list[ChunkSpan]:
        """The segments as pid spans."""
        spans, first = [], 0
        for segment in self.segments:
            spans.append(ChunkSpan(first, segment.passages, segment.source))
            first += segment.passages
        return spans

    def chunks(self, capacity: int) -> list[ChunkSpan]:
        """How the passages are cut into chunk files: untouched chunks stay as they are; added passages fill the
        last chunk up to `capacity` passages (the reference's rule), then go to new chunks of that size."""
        chunks: list[ChunkSpan] = []
        for segment, (first, passages, source) in zip(self.segments, self._spans()):
            if not segment.added:
                chunks.append(ChunkSpan(first, passages, source))
                continue
            if chunks and chunks[-1].passages < capacity:
                take = min(capacity - chunks[-1].passages, passages)
                chunks[-1] = ChunkSpan(chunks[-1].first, chunks[-1].passages + take, None)
                first, passages = first + take, passages - take
            while passages > 0:
                take = min(capacity, passages)
                chunks.append(ChunkSpan(first, take, None))
                first, passages = first + take, passages - take
        return chunks

    def write(self, out_dir: Path, base_dir: Path, capacity: int) -> None:
        """Write the complete index into the empty folder `out_dir`, metadata.json last. Untouched chunks and an
        unchanged codec are hard-linked from `base_dir` (the version the segments' sources refer to)."""
        index = self.index
        chunks = self.chunks(capacity)
        for k, (first, passages, source) in enumerate(chunks):
            start, end = int(index.doc_offsets[first]), int(index.doc_offsets[first + passages])
            if source is not None and not self.codec_changed:
                for src, dst in zip(index_format.chunk_data_files(source), index_format.chunk_data_files(k)):
                    link_or_copy(base_dir / src, out_dir / dst)
                index_format.write_chunk_metadata(out_dir, k, first, passages, end - start, start)
            else:
                index_format.write_chunk(out_dir, k, index.codes[start:end], index.rows(torch.arange(start, end))[1],
                                         index.doclens[first:first + passages], first, start)
        if self.codec_changed:
            index_format.write_codec(out_dir, *self.index.codec.parts)
        else:
            for name in index_format.CODEC_FILES:
                link_or_copy(base_dir / name, out_dir / name)
        ivf, ivf_lengths = build_ivf(index.codes, index.doclens, self.index.num_partitions)  # from the codes, always
        ivf = ivf[: int(ivf_lengths.sum())]  # unpadded, as colbert-ai's updater writes it (its add needs that)
        kept, kept_lengths = self._ivf()
        assert torch.equal(ivf_lengths, kept_lengths) and torch.equal(ivf, kept), \
            "the IVF kept in memory disagrees with the codes"
        index_format.write_ivf(out_dir, ivf, ivf_lengths)
        index_format.write_doc_ids(out_dir, self.stored_ids())
        index_format.write_plan(out_dir, self._plan(base_dir, len(chunks)))
        index_format.write_metadata(out_dir, {**self.current_metadata(), "num_chunks": len(chunks)})

    def _plan(self, base_dir: Path, num_chunks: int) -> dict:
        """The base's plan.json with the counts of this version (estimates become exact)."""
        try:
            plan = index_format.read_plan(base_dir)
        except IndexFormatError:
            plan = {"config": self.metadata["config"]}
        n, p = self.index.num_embeddings, self.index.num_live
        return {**plan, "num_chunks": num_chunks, "num_partitions": self.index.num_partitions,
                "num_embeddings_est": float(n), "avg_doclen_est": n / max(p, 1),
                **({"num_passages": self.index.num_passages} if "num_passages" in plan else {})}


def _stored(ids: list[Optional[DocId]]) -> Optional[list[Optional[DocId]]]:
    """None when every id is its pid (removed ones None), as the reference stores no doc_ids.json; else the ids."""
    positions = all(d is None or (isinstance(d, int) and d == i) for i, d in enumerate(ids))
    return None if positions else ids


def refit_codec(state: IndexState, old: ResidualCodec, kmeans: KMeans) -> ResidualCodec:
    """New centroids and residual buckets fitted on the index's own embeddings, decompressed with `old`, by the
    Indexer's recipe (`fit_codec`: the number of centroids from the number of embeddings, a bounded random sample,
    a held-out part for the buckets), every stored embedding a candidate. `kmeans` fits the centroids (the caller's
    k-means: this package trains nothing)."""

    def decompressed(positions: Tensor) -> Tensor:  # (m, d) float32
        return old.decompress(*state.index.rows(positions))

    n = state.index.num_embeddings
    return fit_codec(n, n, old.nbits, lambda positions: decompressed(positions).half(), decompressed, kmeans)
