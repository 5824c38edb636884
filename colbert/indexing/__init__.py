"""build_index(): the indexing pipeline as a short list of calls to the modules of this package.

1. encode each chunk of passages once, to a build-time file beside the index (fp16);
2. rank 0 fits centroids (k-means: `lloyd` on CPU, fastkmeans on CUDA) on a bounded sample of those embeddings,
   written to a build-time file that `lloyd` reads a window at a time, and the residual codec;
3. each chunk is compressed into codes + packed residuals and written; its build-time file is deleted;
4. rank 0 writes the IVF, the document ids and, last, metadata.json, which marks the index complete.

Memory holds one chunk of embeddings while encoding, then k-means' buffers (the centroids, their scores, a code
per sample point) and one window of the sample, whatever the collection size. With
`resume=True`, chunks already written are kept and encoded chunks are not encoded again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from colbert.data import Collection
from colbert.index import format as index_format
from colbert.index.codec import ResidualCodec, check_nbits, fit_codec
from colbert.indexing.documents import Documents, write_documents
from colbert.indexing.encoder import encode_passages
from colbert.index.ivf import build_ivf_from_chunks
from colbert.indexing.kmeans import train_centroids
from colbert.indexing.platform import Workarounds
from colbert.indexing.plan import SAMPLE_SEED, Plan, make_plan
from colbert.infra.config import ColBERTConfig
from colbert.infra.device import indexing_uses_bf16
from colbert.modeling.checkpoint import Checkpoint
from colbert.utils.progress import progress

logger = logging.getLogger(__name__)

KMeans = Callable[[Tensor, int], Tensor]
READ_WINDOW = 1 << 16  # build-time embeddings read (mapped) at once: 2**16 x 128 dims x fp16 = 16 MiB


@dataclass
class IndexStats:
    """What a build did and where its time went (seconds), for logs and benchmarks."""

    num_passages: int = 0
    num_embeddings: int = 0
    num_partitions: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"encode": 0.0, "kmeans": 0.0, "compress": 0.0,
                                                               "write": 0.0})


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def build_index(index_dir: Path, collection: Collection, checkpoint: Checkpoint, config: ColBERTConfig, plan: Plan,
                rank: int = 0, nranks: int = 1, resume: bool = False, show_progress: bool = True,
                metadata: Optional[list[dict]] = None, kmeans: Optional[KMeans] = None) -> IndexStats:
    """Build a PLAID index of `collection` in `index_dir` (which must exist). Every rank calls this.

    Args:
        index_dir: the folder to write; the facade makes it and moves it into place afterwards.
        collection: the passages, with their ids.
        checkpoint: the encoder, already on its device.
        config: the resolved config (nbits, kmeans_niters, index_bsize, ...); written into plan.json and
            metadata.json. Its `platform_workarounds` switches the workarounds of colbert.indexing.platform (they
            change memory, not the index).
        plan: the chunking and sample, from `load_or_make_plan` (decided once, by the caller).
        rank, nranks: this process among those building the index (torch.distributed initialised when > 1).
        resume: keep what an interrupted build with the same settings already wrote.
        metadata: one JSON object per passage: the texts and these are stored in documents.jsonl; None stores none.
        kmeans: fits the centroids instead of `train_centroids`: (fp16 sample (n, d) on CPU, num_partitions) ->
            centroids (num_partitions, d); they are normalised and rounded to fp16 (a replaced
            `CollectionIndexer._train_kmeans`, see colbert.indexing.collection_indexer).
    """
    check_nbits(config.nbits)
    workarounds = Workarounds(config.platform_workarounds)
    stats = IndexStats(num_passages=len(collection))
    mine = [k for k in range(plan.num_chunks) if k % nranks == rank]
    resume_codec = resume and index_format.codec_is_complete(index_dir)
    for k in progress(mine, desc="Encoding chunks", enabled=show_progress and len(mine) > 1, unit="chunk"):
        if not (resume_codec and index_format.chunk_is_complete(index_dir, k)):
            _encode_chunk(index_dir, k, plan, collection, checkpoint, config, stats, show_progress, resume,
                          workarounds)
            workarounds.release_free_memory()  # each chunk starts from the memory in use, not from what earlier ones left
    _barrier()
    if rank == 0 and not resume_codec:
        _train_codec(index_dir, plan, config, stats, checkpoint.device, workarounds, kmeans)
        workarounds.release_free_memory()
    _barrier()
    codec = _read_codec(index_dir, config)
    for k in mine:
        if not (resume and index_format.chunk_is_complete(index_dir, k)):
            _compress_chunk(index_dir, k, plan, codec, config, stats)
            workarounds.release_free_memory()
    _barrier()
    if rank == 0:
        _finalize(index_dir, plan.num_chunks, collection, config, codec, stats, metadata, show_progress)
    _barrier()
    return stats


def load_or_make_plan(index_dir: Path, collection: Collection, config: ColBERTConfig, nranks: int,
                      resume: bool) -> Plan:
    """A fresh plan, or with `resume` the chunking an interrupted build in `index_dir` started with."""
    plan = make_plan(len(collection), nranks, config.doc_maxlen, seed=SAMPLE_SEED)
    if resume and (index_dir / index_format.PLAN_FILE).is_file():
        stored = index_format.read_plan(index_dir)
        if stored.get("num_passages", len(collection)) != len(collection):
            raise ValueError(f"Cannot resume {index_dir}: it was started on {stored['num_passages']:,} passages, "
                             f"not {len(collection):,}. Use overwrite=True to start over.")
        chunksize = int(stored.get("chunksize", plan.chunksize))
        plan = Plan(plan.num_passages, chunksize, plan.sampled_pids)
    return plan


def _encode_chunk(index_dir: Path, k: int, plan: Plan, collection: Collection, checkpoint: Checkpoint,
                  config: ColBERTConfig, stats: IndexStats, show_progress: bool, resume: bool,
                  workarounds: Workarounds) -> None:
    if resume and index_format.read_chunk_embeddings(index_dir, k) is not None:
        return
    start, end = plan.chunk_range(k)
    t0 = time.perf_counter()
    embeddings, doclens = encode_passages(checkpoint, collection.data[start:end], config.index_bsize,
                                          show_progress=show_progress, first_pid=start,
                                          bf16=indexing_uses_bf16(config, checkpoint.device),
                                          pool_factor=config.pool_factor, protected_tokens=config.protected_tokens,
                                          workarounds=workarounds)
    t1 = time.perf_counter()
    index_format.write_chunk_embeddings(index_dir, k, embeddings, doclens)
    stats.seconds["encode"] += t1 - t0
    stats.seconds["write"] += time.perf_counter() - t1


def _sampled_rows(plan: Plan, k: int, doclens: list[int], sampled: Tensor) -> Tensor:
    """Rows of chunk k's embeddings that belong to the sampled passages (`sampled`: their pids, ascending).
    Shapes: sampled (s,) int64 -> (rows,) int64."""
    start, end = plan.chunk_range(k)
    lo, hi = torch.searchsorted(sampled, torch.tensor([start, end])).tolist()  # sampled[lo:hi] lie in chunk k
    keep = torch.zeros(end - start, dtype=torch.bool)  # (passages,)
    keep[sampled[lo:hi] - start] = True
    return torch.repeat_interleave(keep, torch.tensor(doclens)).nonzero().squeeze(1)  # (rows,)


def _select(plan: Plan, all_doclens: list[list[int]], positions: Tensor) -> list[Tensor]:
    """The rows of each chunk's embeddings at `positions` (ascending) into the candidates: the sampled passages'
    embeddings, chunk after chunk. Each chunk's candidate rows are made in its turn, so memory holds the chosen
    rows, never a row per candidate. Shapes: positions (m,) -> per chunk (m_k,) int64, ascending, sum(m_k) = m."""
    sampled = torch.tensor(plan.sampled_pids, dtype=torch.long)  # (s,) ascending
    chosen, start = [], 0
    for k, doclens in enumerate(all_doclens):
        candidates = _sampled_rows(plan, k, doclens, sampled)  # (c_k,)
        a, b = torch.searchsorted(positions, torch.tensor([start, start + candidates.numel()])).tolist()
        chosen.append(candidates[positions[a:b] - start])
        start += candidates.numel()
    return chosen


def _gathered(index_dir: Path, rows: list[Tensor]) -> Iterator[Tensor]:
    """The embeddings at chunk k's `rows[k]` (ascending) for every k, in chunk order, a piece per window read.
    Shapes: -> pieces (m, dim) fp16, sum(m) = sum(rows[k].numel()).

    Chunk files are read a window of `READ_WINDOW` rows at a time (windows without a wanted row are skipped), each
    unmapped before the next: memory is one window and one piece.
    """
    for k, chosen in enumerate(rows):
        if chosen.numel():
            yield from _chunk_embeddings(index_dir, k).take(chosen, READ_WINDOW)


def _gather(index_dir: Path, rows: list[Tensor], dim: int, dtype: torch.dtype = torch.float16) -> Tensor:
    """`_gathered`, in one tensor of `dtype`. Shapes: -> (sum(rows[k].numel()), dim)."""
    out = torch.empty(sum(r.numel() for r in rows), dim, dtype=dtype)
    first = 0
    for piece in _gathered(index_dir, rows):
        out[first:first + piece.size(0)] = piece
        first += piece.size(0)
    return out


def _chunk_embeddings(index_dir: Path, k: int) -> index_format.ChunkEmbeddings:
    stored = index_format.read_chunk_embeddings(index_dir, k)
    if stored is None:
        raise RuntimeError(f"chunk {k} of {index_dir} was not encoded; rebuild with overwrite=True")
    return stored


def _train_codec(index_dir: Path, plan: Plan, config: ColBERTConfig, stats: IndexStats,
                 device: torch.device, workarounds: Workarounds, kmeans: Optional[KMeans] = None) -> None:
    """The codec (`colbert.index.codec.fit_codec`) from the embeddings of the plan's sampled passages: k-means on
    `device` when it is a GPU, else on CPU, on a sample written to a build-time file that `lloyd` streams; the
    residual buckets on a held-out part (the reference's 5 %, at most 50k)."""
    t0 = time.perf_counter()
    all_doclens = [_chunk_embeddings(index_dir, k).doclens for k in range(plan.num_chunks)]  # (no embedding read)
    sampled = torch.tensor(plan.sampled_pids, dtype=torch.long)  # (s,) ascending
    num_candidates = sum(_sampled_rows(plan, k, doclens, sampled).numel() for k, doclens in enumerate(all_doclens))
    del sampled
    num_embeddings = sum(sum(doclens) for doclens in all_doclens)
    sample_path = index_dir / index_format.KMEANS_SAMPLE_FILE
    bf16 = indexing_uses_bf16(config, torch.device("cpu"))

    def points(positions: Tensor) -> index_format.ChunkEmbeddings:  # on disk: lloyd reads it a window at a time
        rows = _select(plan, all_doclens, positions)
        index_format.write_rows(sample_path, positions.numel(), config.dim, _gathered(index_dir, rows))
        del rows
        sample = index_format.read_rows(sample_path)
        if sample is None:
            raise RuntimeError(f"{sample_path} could not be read back after writing it; is the disk full?")
        workarounds.release_free_memory()  # the gathering's temporaries: k-means starts from its buffers alone
        return sample

    def heldout(positions: Tensor) -> Tensor:  # float32, so that the fit turns them into the residuals in place
        return _gather(index_dir, _select(plan, all_doclens, positions), config.dim, dtype=torch.float32)

    def centroids_of(sample: index_format.ChunkEmbeddings, num_partitions: int) -> Tensor:
        if kmeans is None:
            kmeans_device = device if device.type == "cuda" else torch.device("cpu")
            return train_centroids(sample, num_partitions, config.kmeans_niters, device=kmeans_device, bf16=bf16)
        centroids = kmeans(sample.rows(0, len(sample)).clone(), num_partitions)  # (C, d)
        return F.normalize(centroids.detach().float().cpu(), dim=-1).half()

    codec = fit_codec(num_candidates, num_embeddings, config.nbits, points, heldout, centroids_of, bf16=bf16)
    sample_path.unlink()
    stats.seconds["kmeans"] += time.perf_counter() - t0
    t1 = time.perf_counter()
    index_format.write_plan(index_dir, {
        "config": config, "num_chunks": plan.num_chunks, "num_partitions": codec.centroids.size(0),
        "num_embeddings_est": float(num_embeddings), "avg_doclen_est": num_embeddings / plan.num_passages,
        "num_passages": plan.num_passages, "chunksize": plan.chunksize})
    index_format.write_codec(index_dir, *codec.parts)
    stats.seconds["write"] += time.perf_counter() - t1


def _read_codec(index_dir: Path, config: ColBERTConfig) -> ResidualCodec:
    plan = index_format.read_plan(index_dir)
    codec = index_format.read_codec(index_dir, config.dim, config.nbits, plan["num_partitions"])
    return ResidualCodec.from_parts(codec, config.nbits)


def _compress_chunk(index_dir: Path, k: int, plan: Plan, codec: ResidualCodec, config: ColBERTConfig,
                    stats: IndexStats) -> None:
    chunk = _chunk_embeddings(index_dir, k)
    bf16 = indexing_uses_bf16(config, torch.device("cpu"))
    t0 = time.perf_counter()
    codes = torch.empty(len(chunk), dtype=torch.int32)
    residuals = torch.empty(len(chunk), codec.dim * codec.nbits // 8, dtype=torch.uint8)
    for start, window in chunk.windows(READ_WINDOW):  # one mapped window at a time
        codes[start:start + window.size(0)], residuals[start:start + window.size(0)] = codec.compress(window, bf16)
        del window
    t1 = time.perf_counter()
    index_format.write_chunk(index_dir, k, codes, residuals, chunk.doclens, passage_offset=plan.chunk_range(k)[0])
    index_format.remove_chunk_embeddings(index_dir, k)
    stats.seconds["compress"] += t1 - t0
    stats.seconds["write"] += time.perf_counter() - t1


def resave_index(index_dir: Path, collection: Collection, config: ColBERTConfig,
                 metadata: Optional[list[dict]] = None, show_progress: bool = True) -> IndexStats:
    """What colbert-ai's `overwrite='resume'` does to a complete index: its resumed build finds the plan, the codec
    and every chunk written, so it only finalizes again: chunk offsets, IVF and metadata.json (with `config`, the
    current settings) are derived anew from the chunks. Here the ids of `collection` (and, with `metadata`, the
    texts) are written too. No passage is encoded and no model is needed. `index_dir` is a copy the caller
    publishes (its files are replaced by rename, never written in place, so a hard-linked copy is safe).

    Raises:
        ValueError: `collection` does not have as many passages as the index (before anything is written).
    """
    stored = index_format.read_metadata(index_dir)
    num_chunks = stored["num_chunks"]
    num_passages = sum(index_format.read_chunk_metadata(index_dir, k)["num_passages"] for k in range(num_chunks))
    problem = None
    if num_passages != len(collection):
        problem = f"its chunks hold {num_passages:,} passages but the collection has {len(collection):,}"
    for key in ("dim", "nbits"):
        if stored["config"][key] != getattr(config, key):
            problem = f"it has {key}={stored['config'][key]} but the settings say {key}={getattr(config, key)}"
    if problem:
        raise ValueError(f"overwrite='resume' on the complete index {index_dir} saves it again from its chunks, but "
                         f"{problem}; pass the collection and settings it was built with, or overwrite=True to "
                         "rebuild")
    codec = index_format.read_codec(index_dir, config.dim, config.nbits, stored["num_partitions"])
    stats = IndexStats(num_passages=num_passages)
    _finalize(index_dir, num_chunks, collection, config, ResidualCodec.from_parts(codec, config.nbits), stats,
              metadata, show_progress)
    return stats


def _finalize(index_dir: Path, num_chunks: int, collection: Collection, config: ColBERTConfig, codec: ResidualCodec,
              stats: IndexStats, metadata: Optional[list[dict]], show_progress: bool) -> None:
    t0 = time.perf_counter()
    num_embeddings = index_format.write_embedding_offsets(index_dir, num_chunks)
    num_partitions = codec.centroids.size(0)
    chunks = (index_format.read_chunk(index_dir, k, config.dim, config.nbits, mmap=True)
              for k in range(num_chunks))  # read one at a time, each unmapped once its lists are taken
    ivf, ivf_lengths = build_ivf_from_chunks(((c.codes, c.doclens) for c in chunks), num_partitions,
                                             show_progress=None if show_progress else False)
    index_format.write_ivf(index_dir, ivf, ivf_lengths)
    index_format.write_doc_ids(index_dir, collection.ids)
    if metadata is not None:
        ids = [collection.id_of(pid) for pid in range(len(collection))]
        write_documents(index_dir, Documents(ids, list(collection.data), metadata))
    leftovers = index_format.remove_build_files(index_dir)  # e.g. an earlier version's, from an interrupted build
    if leftovers:
        logger.info("Removed %d build-time files left in %s", len(leftovers), index_dir)
    index_format.write_metadata(index_dir, {
        "config": config, "num_chunks": num_chunks, "num_partitions": num_partitions,
        "num_embeddings": num_embeddings, "avg_doclen": num_embeddings / len(collection)})
    stats.num_embeddings, stats.num_partitions = num_embeddings, num_partitions
    stats.seconds["write"] += time.perf_counter() - t0


__all__ = ["IndexStats", "build_index", "load_or_make_plan", "resave_index"]
