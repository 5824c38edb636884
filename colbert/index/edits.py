"""An index being edited in memory: passages removed and added, the IVF kept consistent, new versions written.

Letters: C centroids, P passages, N token embeddings, w = d * nbits / 8 bytes per packed residual row.

Passages are held as segments, runs of consecutive pids. A segment read from disk and left untouched remembers its
chunk number (`source`) and is hard-linked when a version is written; a segment with rows removed, or of added
passages, is written anew. Pids are stable, as in the reference (colbert-ai): a removed passage keeps its position
with doclen 0 (its embeddings and IVF entries are gone, its id becomes None), and added passages take the next
pids. So colbert-ai, which returns pids and ignores doc_ids.json, names the same documents as we do.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from colbert.errors import IndexFormatError
from colbert.index import format as index_format
from colbert.index.codec import COMPRESS_BATCH, KMeans, ResidualCodec, fit_codec
from colbert.index.ivf import build_ivf
from colbert.index.loaded import DocId, LoadedIndex
from colbert.index.versions import Pin, link_or_copy

logger = logging.getLogger(__name__)


@dataclass
class Segment:
    """Consecutive passages. Shapes: doclens (p,) int64; codes (n,) int32; residuals (n, w) uint8, n = sum(doclens).

    source: the chunk of the base version whose files hold exactly these passages (hard-linked on persist), or None.
    added: passages added since the base version (they fill the last chunk, then new ones, when persisted).
    """

    doclens: Tensor
    codes: Tensor
    residuals: Tensor
    source: Optional[int] = None
    added: bool = False

    @property
    def num_passages(self) -> int:
        return self.doclens.numel()

    def clear(self, mask: Tensor) -> Segment:
        """Empty the passages where `mask` (bool (p,)) is False: their doclens become 0 and their rows go; the
        passages keep their positions. Self when nothing is cleared."""
        if bool(mask.all()):
            return self
        rows = torch.repeat_interleave(mask, self.doclens)  # (n,) embeddings of kept passages
        return Segment(self.doclens * mask, self.codes[rows], self.residuals[rows], added=self.added)

    def split(self, num_passages: int) -> tuple[Segment, Optional[Segment]]:
        """The first `num_passages` passages, and the rest (None when nothing is left)."""
        if num_passages >= self.num_passages:
            return self, None
        n = int(self.doclens[:num_passages].sum())
        head = Segment(self.doclens[:num_passages], self.codes[:n], self.residuals[:n], added=self.added)
        return head, Segment(self.doclens[num_passages:], self.codes[n:], self.residuals[n:], added=self.added)

    @staticmethod
    def join(parts: Sequence[Segment], added: bool) -> Segment:
        return Segment(torch.cat([s.doclens for s in parts]), torch.cat([s.codes for s in parts]),
                       torch.cat([s.residuals for s in parts]), added=added)


def _segments_of(index: LoadedIndex) -> list[Segment]:
    """One segment per chunk file of an index read from disk; one in-RAM segment for an index built in memory."""
    if index.chunk_passages is None:
        residuals = torch.cat(index.residual_chunks) if len(index.residual_chunks) != 1 else index.residual_chunks[0]
        return [Segment(index.doclens.clone(), index.codes, residuals)]
    segments, pid = [], 0
    for k, passages in enumerate(index.chunk_passages):
        start, end = int(index.doc_offsets[pid]), int(index.doc_offsets[pid + passages])
        if len(index.residual_chunks) == len(index.chunk_passages):
            residuals = index.residual_chunks[k]  # each chunk its own (memory-mapped) tensor
        else:
            residuals = index.residual_chunks[0][start:end]  # a view of the one RAM tensor
        segments.append(Segment(index.doclens[pid:pid + passages], index.codes[start:end], residuals, source=k))
        pid += passages
    return segments


@dataclass
class IndexState:
    """The whole editable index. ivf is unpadded: list c is ivf[offsets[c]:offsets[c + 1]], sorted pids.
    doc_ids has one entry per pid: None for a removed passage (doclen 0).

    Shapes: ivf (sum(ivf_lengths),) int32; ivf_lengths (C,) int64.
    """

    path: Path
    metadata: dict
    codec: ResidualCodec
    segments: list[Segment]
    doc_ids: list[DocId]
    ivf: Tensor
    ivf_lengths: Tensor
    base: Optional[Pin] = None
    codec_changed: bool = False
    _pid_of: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_loaded(cls, index: LoadedIndex) -> IndexState:
        doc_ids = list(range(index.num_passages)) if index.doc_ids is None else list(index.doc_ids)
        for pid in (index.doclens == 0).nonzero().flatten().tolist():
            doc_ids[pid] = None  # removed (colbert-ai's updater leaves doclen 0 behind)
        ivf = index.ivf[: int(index.ivf_lengths.sum())]  # drop the reference's padding
        state = cls(index.path, dict(index.metadata), index.codec, _segments_of(index), doc_ids, ivf,
                    index.ivf_lengths.clone(), base=index.pin)
        state._pid_of = {doc_id: pid for pid, doc_id in enumerate(doc_ids) if doc_id is not None}
        return state

    @property
    def num_passages(self) -> int:
        """Pids in use, removed passages included (they keep their positions)."""
        return len(self.doc_ids)

    @property
    def num_live(self) -> int:
        """Passages not removed."""
        return len(self._pid_of)

    @property
    def live_ids(self) -> list[DocId]:
        return [doc_id for doc_id in self.doc_ids if doc_id is not None]

    @property
    def num_embeddings(self) -> int:
        return sum(s.codes.numel() for s in self.segments)

    @property
    def num_partitions(self) -> int:
        return self.codec.centroids.size(0)

    def pid_of(self, doc_id: DocId) -> Optional[int]:
        return self._pid_of.get(doc_id)

    def doclens(self) -> Tensor:
        return torch.cat([s.doclens for s in self.segments])  # (P,)

    def codes(self) -> Tensor:
        return self.segments[0].codes if len(self.segments) == 1 else torch.cat([s.codes for s in self.segments])

    # ----------------------------------------------------------------------------------------------- edits

    def remove(self, pids: Tensor) -> None:
        """Empty passages (unique int64 pids of live passages): their embeddings and IVF entries go, their doclens
        become 0 and their ids None; every pid stays where it was (the reference's rule)."""
        keep = torch.ones(self.num_passages, dtype=torch.bool)  # (P,)
        keep[pids] = False
        segments, start = [], 0
        for segment in self.segments:
            segments.append(segment.clear(keep[start:start + segment.num_passages]))
            start += segment.num_passages
        self.segments = segments
        for pid in pids.tolist():
            del self._pid_of[self.doc_ids[pid]]
            self.doc_ids[pid] = None
        list_of = torch.repeat_interleave(torch.arange(self.num_partitions), self.ivf_lengths)  # (M,)
        alive = keep[self.ivf.long()]  # (M,)
        self.ivf = self.ivf[alive]  # still sorted within each list
        self.ivf_lengths = torch.bincount(list_of[alive], minlength=self.num_partitions)

    def append(self, codes: Tensor, residuals: Tensor, doclens: Sequence[int], ids: Sequence[DocId]) -> None:
        """Add passages after the last pid. Shapes: codes (n,) int32; residuals (n, w) uint8; doclens (q,)."""
        doclens = torch.as_tensor(list(doclens), dtype=torch.int64)  # (q,)
        first, q = self.num_passages, doclens.numel()
        new = Segment(doclens, codes.to(torch.int32), residuals, added=True)
        if self.segments and self.segments[-1].added:
            self.segments[-1] = Segment.join([self.segments[-1], new], added=True)
        else:
            self.segments.append(new)
        for doc_id in ids:
            self._pid_of[doc_id] = len(self.doc_ids)
            self.doc_ids.append(doc_id)
        local = torch.repeat_interleave(torch.arange(q), doclens)  # (n,) passage of each embedding
        keys = torch.unique(codes.long() * q + local)  # (m,) distinct (centroid, passage), sorted by centroid
        lists, pids = keys // q, keys % q + first
        list_of = torch.repeat_interleave(torch.arange(self.num_partitions), self.ivf_lengths)  # (M,)
        order = torch.argsort(torch.cat([list_of, lists]), stable=True)  # old pids first within a list: sorted
        self.ivf = torch.cat([self.ivf.long(), pids])[order].to(torch.int32)  # (M + m,)
        self.ivf_lengths = self.ivf_lengths + torch.bincount(lists, minlength=self.num_partitions)

    def recompress(self, new: ResidualCodec, old: ResidualCodec) -> None:
        """Re-encode every embedding with a new codec: decompress with the old one, compress with the new one."""
        segments = []
        for segment in self.segments:
            codes = torch.empty_like(segment.codes)
            residuals = torch.empty(segment.codes.numel(), new.dim * new.nbits // 8, dtype=torch.uint8)
            for start in range(0, codes.numel(), COMPRESS_BATCH):
                block = slice(start, start + COMPRESS_BATCH)
                embeddings = old.decompress(segment.codes[block], segment.residuals[block])  # (b, d)
                codes[block], residuals[block] = new.compress(embeddings)
            segments.append(Segment(segment.doclens, codes, residuals, added=segment.added))
        self.segments = segments
        self.codec = new
        self.codec_changed = True
        ivf, self.ivf_lengths = build_ivf(self.codes(), self.doclens(), new.centroids.size(0))
        self.ivf = ivf[: int(self.ivf_lengths.sum())]

    def rows(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Codes and residuals of embeddings by global row, across segments. Shapes: rows (m,) -> (m,), (m, w)."""
        sizes = torch.tensor([s.codes.numel() for s in self.segments])
        starts = torch.cumsum(sizes, 0) - sizes  # (segments,)
        owner = torch.searchsorted(starts, rows, right=True) - 1  # (m,) segment of each row
        width = self.segments[0].residuals.size(1)
        codes = torch.empty(rows.numel(), dtype=torch.int32)
        residuals = torch.empty(rows.numel(), width, dtype=torch.uint8)
        for k, segment in enumerate(self.segments):
            where = (owner == k).nonzero().squeeze(1)  # positions in the output drawn from segment k
            local = rows[where] - starts[k]
            codes[where], residuals[where] = segment.codes[local], segment.residuals[local]
        return codes, residuals

    # ----------------------------------------------------------------------------------------------- views

    def current_metadata(self) -> dict:
        """metadata.json of this state: a copy, which later edits of the state leave alone."""
        n, p = self.num_embeddings, self.num_live
        return {**copy.deepcopy(self.metadata), "num_chunks": len(self.segments), "num_partitions": self.num_partitions,
                "num_embeddings": n, "avg_doclen": n / max(p, 1)}

    def stored_ids(self) -> Optional[list[Optional[DocId]]]:
        """The ids to store in doc_ids.json (null for removed passages), or None when every passage's id is its
        pid (removed ones included), as for the reference."""
        positions = all(d is None or (isinstance(d, int) and d == i) for i, d in enumerate(self.doc_ids))
        return None if positions else list(self.doc_ids)

    def to_loaded(self, join_residuals: bool = False) -> LoadedIndex:
        """What a Searcher reads, assembled from memory (no file is read).

        Args:
            join_residuals: one residual tensor for all rows (needed to search on a GPU).
        """
        residuals = [s.residuals for s in self.segments]
        if join_residuals and len(residuals) > 1:
            residuals = [torch.cat(residuals)]
        return LoadedIndex.from_tensors(self.path, self.current_metadata(), self.codec, self.ivf, self.ivf_lengths,
                                        self.doclens(), self.codes(), residuals, doc_ids=self.stored_ids(),
                                        pin=self.base)

    # ----------------------------------------------------------------------------------------------- writing

    def chunks(self, capacity: int) -> list[Segment]:
        """How the passages are cut into chunk files: untouched chunks stay as they are; added passages fill the
        last chunk up to `capacity` passages (the reference's rule), then go to new chunks of that size."""
        chunks: list[Segment] = []
        for segment in self.segments:
            rest: Optional[Segment] = segment
            if segment.added and chunks and chunks[-1].num_passages < capacity:
                head, rest = segment.split(capacity - chunks[-1].num_passages)
                chunks[-1] = Segment.join([chunks[-1], head], added=False)
            while rest is not None:
                head, rest = rest.split(capacity) if rest.added else (rest, None)
                chunks.append(head)
        return chunks

    def write(self, out_dir: Path, base_dir: Path, capacity: int) -> None:
        """Write the complete index into the empty folder `out_dir`, metadata.json last. Untouched chunks and an
        unchanged codec are hard-linked from `base_dir` (the version the segments' sources refer to)."""
        offset = embeddings = 0
        chunks = self.chunks(capacity)
        for k, chunk in enumerate(chunks):
            n = chunk.codes.numel()
            if chunk.source is not None and not self.codec_changed:
                for src, dst in zip(index_format.chunk_data_files(chunk.source), index_format.chunk_data_files(k)):
                    link_or_copy(base_dir / src, out_dir / dst)
                index_format.write_chunk_metadata(out_dir, k, offset, chunk.num_passages, n, embeddings)
            else:
                index_format.write_chunk(out_dir, k, chunk.codes, chunk.residuals, chunk.doclens, offset, embeddings)
            offset, embeddings = offset + chunk.num_passages, embeddings + n
        if self.codec_changed:
            index_format.write_codec(out_dir, *self.codec.parts)
        else:
            for name in index_format.CODEC_FILES:
                link_or_copy(base_dir / name, out_dir / name)
        ivf, ivf_lengths = build_ivf(self.codes(), self.doclens(), self.num_partitions)  # from the codes, always
        ivf = ivf[: int(ivf_lengths.sum())]  # unpadded, as colbert-ai's updater writes it (its add needs that)
        assert torch.equal(ivf_lengths, self.ivf_lengths) and torch.equal(ivf, self.ivf), \
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
        n, p = self.num_embeddings, self.num_live
        return {**plan, "num_chunks": num_chunks, "num_partitions": self.num_partitions,
                "num_embeddings_est": float(n), "avg_doclen_est": n / max(p, 1),
                **({"num_passages": self.num_passages} if "num_passages" in plan else {})}


def refit_codec(state: IndexState, old: ResidualCodec, kmeans: KMeans) -> ResidualCodec:
    """New centroids and residual buckets fitted on the index's own embeddings, decompressed with `old`, by the
    Indexer's recipe (`fit_codec`: the number of centroids from the number of embeddings, a bounded random sample,
    a held-out part for the buckets), every stored embedding a candidate. `kmeans` fits the centroids (the caller's
    k-means: this package trains nothing)."""

    def decompressed(positions: Tensor) -> Tensor:  # (m, d) float32
        return old.decompress(*state.rows(positions))

    n = state.num_embeddings
    return fit_codec(n, n, old.nbits, lambda positions: decompressed(positions).half(), decompressed, kmeans)
