"""THE on-disk PLAID index format: every filename, dtype and shape; atomic writes; checked reads.

An index folder holds (C centroids, d = dim, N token embeddings, P passages, k = 0..num_chunks-1):

| file               | content                                                                           |
|--------------------|-----------------------------------------------------------------------------------|
| `plan.json`        | {"config", "num_chunks", "num_partitions", "num_embeddings_est", "avg_doclen_est"}  |
| `centroids.pt`     | float16 (C, d)                                                                    |
| `buckets.pt`       | tuple (bucket_cutoffs float32 (2**nbits - 1,), bucket_weights float32 (2**nbits,)) |
| `avg_residual.pt`  | 0-dim float32                                                                     |
| `k.codes.pt`       | int32 (n_k,): centroid id of each embedding of chunk k, passages in pid order      |
| `k.residuals.pt`   | uint8 (n_k, d * nbits / 8): packed residual bucket ids                             |
| `doclens.k.json`   | [int, ...]: embeddings per passage of chunk k                                      |
| `k.metadata.json`  | {"passage_offset", "num_passages", "num_embeddings", "embedding_offset"}          |
| `ivf.pid.pt`       | tuple (ivf int32 (>= sum of lengths,), ivf_lengths int64 (C,)): pids per centroid  |
| `doc_ids.json`     | ours, optional: the user's ids in pid order, null if removed (absent: 0..P-1)      |
| `documents.jsonl`  | ours, optional: one {"id", "text", "metadata"} per line, in pid order              |
| `metadata.json`    | {"config", "num_chunks", "num_partitions", "num_embeddings", "avg_doclen"}; LAST   |
|                    | (+ ours: "doc_ids": true when doc_ids.json exists)                                 |

While an index is built its folder also holds build-time files, all deleted before `metadata.json` is written:
`k.embeddings.build.npy` with `k.embeddings.build.json` (a chunk's fp16 embeddings and doclens, from encoding to
compression) and `kmeans_sample.build.npy` (the k-means sample, during k-means).

Every write goes to a temporary sibling renamed over the target. Within a chunk `k.metadata.json` is written after
the chunk's other files, and `metadata.json` after everything else, so its presence marks a complete index. The
reference (colbert-ai) ignores `doc_ids.json` and `documents.jsonl`, so indexes move both ways. A passage with doclen 0 is a removed one:
the reference's IndexUpdater and ours keep its position (pids never move), so both name documents alike.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from colbert.errors import IndexFormatError
from colbert.utils.io import atomic_torch_save, atomic_write, fsync_dir, load_json

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

PLAN_FILE = "plan.json"
METADATA_FILE = "metadata.json"
CENTROIDS_FILE = "centroids.pt"
BUCKETS_FILE = "buckets.pt"
AVG_RESIDUAL_FILE = "avg_residual.pt"
IVF_FILE = "ivf.pid.pt"
DOC_IDS_FILE = "doc_ids.json"
DOC_IDS_KEY = "doc_ids"  # in metadata.json: true when the index has a doc_ids.json
DOCUMENTS_FILE = "documents.jsonl"  # the stored texts and metadata (colbert.indexing.documents)

CODEC_FILES = (CENTROIDS_FILE, BUCKETS_FILE, AVG_RESIDUAL_FILE)

PLAN_KEYS = ("config", "num_chunks", "num_partitions", "num_embeddings_est", "avg_doclen_est")
METADATA_KEYS = ("config", "num_chunks", "num_partitions", "num_embeddings", "avg_doclen")
CHUNK_KEYS = ("passage_offset", "num_passages", "num_embeddings", "embedding_offset")

REBUILD = "Rebuild it with Indexer.index(name, collection, overwrite=True)."
DOCUMENTS_FIX = "Delete it (search still works without it) or rebuild the index with store_documents=True."
# The one pattern of chunk file names (N.codes.pt, N.residuals.pt, doclens.N.json, N.metadata.json).
CHUNK_FILE = re.compile(r"^(?:(?P<a>\d+)\.(?:codes|residuals)\.pt|doclens\.(?P<b>\d+)\.json|(?P<c>\d+)\.metadata\.json)$")
# Files we may delete when an index is overwritten; ivf.pt is the reference's pre-optimisation IVF.
_INDEX_FILE = re.compile(rf"{CHUNK_FILE.pattern}|^ivf\.pt$")
# Build-time files (deleted before an index is complete); N.embeddings.build.pt is what earlier versions wrote.
_BUILD_FILE = re.compile(r"^(\d+\.embeddings\.build\.(npy|json|pt)|kmeans_sample\.build\.npy)$")
KMEANS_SAMPLE_FILE = "kmeans_sample.build.npy"  # build-time: the k-means sample, read a window at a time
_TEMP_FILE = re.compile(r"^\..+\.\d+\.tmp$")


def chunk_number(name: str) -> int | None:
    """The chunk a file name belongs to (`CHUNK_FILE`), or None for any other file.

    >>> chunk_number("12.codes.pt"), chunk_number("doclens.3.json"), chunk_number("plan.json")
    (12, 3, None)
    """
    match = CHUNK_FILE.match(name)
    return None if match is None else int(next(g for g in match.groups() if g is not None))


def codes_file(chunk_idx: int) -> str:
    return f"{chunk_idx}.codes.pt"


def residuals_file(chunk_idx: int) -> str:
    return f"{chunk_idx}.residuals.pt"


def doclens_file(chunk_idx: int) -> str:
    return f"doclens.{chunk_idx}.json"


def chunk_metadata_file(chunk_idx: int) -> str:
    return f"{chunk_idx}.metadata.json"


def chunk_data_files(chunk_idx: int) -> tuple[str, str, str]:
    """A chunk's files other than its metadata (written first): codes, residuals, doclens."""
    return codes_file(chunk_idx), residuals_file(chunk_idx), doclens_file(chunk_idx)


def embeddings_file(chunk_idx: int) -> str:
    """Build-time only: a chunk's fp16 embeddings between encoding and compression (deleted after), as .npy."""
    return f"{chunk_idx}.embeddings.build.npy"


def embeddings_doclens_file(chunk_idx: int) -> str:
    """Build-time only: the doclens of `embeddings_file`, written after it (so both exist only when complete)."""
    return f"{chunk_idx}.embeddings.build.json"


def packed_dim(dim: int, nbits: int) -> int:
    """Bytes per packed residual row.

    >>> packed_dim(128, 2)
    32
    """
    if dim * nbits % 8:
        raise ValueError(f"dim * nbits must be a multiple of 8 to pack residuals; got dim={dim}, nbits={nbits}")
    return dim * nbits // 8


class Codec(NamedTuple):
    """The codec files. Shapes: centroids (C, d) fp16; bucket_cutoffs (2**nbits - 1,) and bucket_weights
    (2**nbits,) fp32; avg_residual () fp32."""

    centroids: Tensor
    bucket_cutoffs: Tensor
    bucket_weights: Tensor
    avg_residual: Tensor


class Chunk(NamedTuple):
    """One chunk as read by `read_chunk`. Shapes: doclens (n_passages,) int64; codes (n,) int32;
    residuals (n, d * nbits / 8) uint8."""

    metadata: dict
    doclens: Tensor
    codes: Tensor
    residuals: Tensor


def _bad(path: Path, problem: str, fix: str = REBUILD) -> IndexFormatError:
    return IndexFormatError(f"{path} {problem}. {fix}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


# --------------------------------------------------------------------------------------------------- writing


def _write_json(path: Path, obj: Any, indent: int | None = 4) -> None:
    """JSON through a temporary sibling; indent=None writes it compact on one line, as the reference's doclens."""
    separators = (",", ":") if indent is None else None
    text = json.dumps(obj, indent=indent, separators=separators, default=os.fspath)
    with atomic_write(path) as f:
        f.write(text + "\n" if indent is not None else text)


def _compact(t: Tensor) -> Tensor:
    """A CPU tensor owning exactly its elements: torch.save of a view would write the whole storage."""
    t = t.detach().cpu()
    if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone(memory_format=torch.contiguous_format)
    return t


def _ordered(data: Mapping[str, Any], keys: Sequence[str], what: str) -> dict:
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{what} needs the keys {list(keys)}; missing {missing}")
    out = {k: data[k] for k in keys}
    config = out["config"]
    out["config"] = dict(config.export() if hasattr(config, "export") else config)
    out.update((k, v) for k, v in data.items() if k not in out)  # extra keys are kept, after ours
    return out


def write_plan(index_dir: PathLike, plan: Mapping[str, Any]) -> None:
    """Write plan.json; `plan["config"]` may be a ColBERTConfig or its export()."""
    _write_json(Path(index_dir) / PLAN_FILE, _ordered(plan, PLAN_KEYS, "plan.json"))


def write_metadata(index_dir: PathLike, metadata: Mapping[str, Any]) -> None:
    """Write metadata.json, the completeness marker: call it after every other file of the index is written.

    When doc_ids.json was written, metadata.json records it (`"doc_ids": true`), so that an index whose ids file
    went missing is refused on open instead of answering with positions for ids."""
    index_dir = Path(index_dir)
    metadata = {k: v for k, v in metadata.items() if k != DOC_IDS_KEY}
    if (index_dir / DOC_IDS_FILE).exists():
        metadata[DOC_IDS_KEY] = True
    _write_json(index_dir / METADATA_FILE, _ordered(metadata, METADATA_KEYS, "metadata.json"))
    fsync_dir(index_dir)


def write_codec(
    index_dir: PathLike, centroids: Tensor, bucket_cutoffs: Tensor, bucket_weights: Tensor, avg_residual: Tensor | float
) -> None:
    """Write centroids.pt (as fp16), buckets.pt and avg_residual.pt (0-dim fp32).

    Shapes: centroids (C, d); bucket_cutoffs (2**nbits - 1,); bucket_weights (2**nbits,).
    """
    if centroids.dim() != 2 or not centroids.is_floating_point():
        raise ValueError(f"centroids must be a 2-D float tensor, got {_describe(centroids)}")
    if bucket_weights.dim() != 1 or bucket_cutoffs.shape != (bucket_weights.numel() - 1,):
        raise ValueError(f"bucket_cutoffs and bucket_weights must be 1-D with n - 1 and n elements, got "
                         f"{tuple(bucket_cutoffs.shape)} and {tuple(bucket_weights.shape)}")
    index_dir = Path(index_dir)
    atomic_torch_save(_compact(centroids.half()), index_dir / CENTROIDS_FILE)
    buckets = (_compact(bucket_cutoffs.float()), _compact(bucket_weights.float()))
    atomic_torch_save(buckets, index_dir / BUCKETS_FILE)
    avg = torch.as_tensor(avg_residual, dtype=torch.float32).reshape(())
    atomic_torch_save(_compact(avg), index_dir / AVG_RESIDUAL_FILE)


def write_chunk(
    index_dir: PathLike,
    chunk_idx: int,
    codes: Tensor,
    residuals: Tensor,
    doclens: Sequence[int] | Tensor,
    passage_offset: int,
    embedding_offset: int | None = None,
) -> None:
    """Write one chunk: codes, residuals and doclens first, then `k.metadata.json`, which marks it complete.

    `embedding_offset=None` leaves the key out (as the reference does until it finalises); fill it in with
    `write_embedding_offsets` once every chunk is written.

    Shapes: codes (n,) integer; residuals (n, d * nbits / 8) uint8; doclens (passages,) summing to n.
    """
    doclens = [int(x) for x in (doclens.tolist() if isinstance(doclens, Tensor) else doclens)]
    codes_ok = codes.dim() == 1 and not codes.is_floating_point()
    if not codes_ok or residuals.dim() != 2 or residuals.dtype != torch.uint8 or len(residuals) != len(codes):
        raise ValueError(f"codes must be 1-D and residuals 2-D uint8 with as many rows; got {_describe(codes)} "
                         f"and {_describe(residuals)}")
    if sum(doclens) != len(codes):
        raise ValueError(f"doclens sum to {sum(doclens):,} but chunk {chunk_idx} has {len(codes):,} codes")
    index_dir = Path(index_dir)
    (index_dir / chunk_metadata_file(chunk_idx)).unlink(missing_ok=True)  # incomplete until rewritten below
    atomic_torch_save(_compact(codes.to(torch.int32)), index_dir / codes_file(chunk_idx))
    atomic_torch_save(_compact(residuals), index_dir / residuals_file(chunk_idx))
    _write_json(index_dir / doclens_file(chunk_idx), doclens, indent=None)
    meta = {"passage_offset": int(passage_offset), "num_passages": len(doclens), "num_embeddings": len(codes)}
    if embedding_offset is not None:
        meta["embedding_offset"] = int(embedding_offset)
    _write_json(index_dir / chunk_metadata_file(chunk_idx), meta)


def write_chunk_metadata(index_dir: PathLike, chunk_idx: int, passage_offset: int, num_passages: int,
                         num_embeddings: int, embedding_offset: int) -> None:
    """Write `k.metadata.json` alone, for a chunk whose data files are already in place (e.g. hard-linked from the
    previous version of the index by IndexUpdater); it marks the chunk complete."""
    meta = {"passage_offset": int(passage_offset), "num_passages": int(num_passages),
            "num_embeddings": int(num_embeddings), "embedding_offset": int(embedding_offset)}
    _write_json(Path(index_dir) / chunk_metadata_file(chunk_idx), meta)


def write_embedding_offsets(index_dir: PathLike, num_chunks: int) -> int:
    """Fill in each chunk's embedding_offset (checking passage offsets are contiguous); return the total."""
    passages = embeddings = 0
    for k in range(num_chunks):
        meta = read_chunk_metadata(index_dir, k)
        if meta["passage_offset"] != passages:
            raise _bad(Path(index_dir) / chunk_metadata_file(k),
                       f"starts at passage {meta['passage_offset']:,} but the chunks before end at {passages:,}")
        meta["embedding_offset"] = embeddings
        _write_json(Path(index_dir) / chunk_metadata_file(k), meta)
        passages, embeddings = passages + meta["num_passages"], embeddings + meta["num_embeddings"]
    return embeddings


def write_ivf(index_dir: PathLike, ivf: Tensor, ivf_lengths: Tensor) -> None:
    """Write ivf.pid.pt. Shapes: ivf (>= sum(ivf_lengths),) int32 pids; ivf_lengths (C,) int64."""
    if ivf.dim() != 1 or ivf_lengths.dim() != 1 or int(ivf_lengths.sum()) > ivf.numel():
        raise ValueError(f"ivf must be 1-D and hold sum(ivf_lengths) pids; got {_describe(ivf)}, "
                         f"{_describe(ivf_lengths)}")
    ivf_pair = (_compact(ivf.to(torch.int32)), _compact(ivf_lengths.to(torch.int64)))
    atomic_torch_save(ivf_pair, Path(index_dir) / IVF_FILE)


def write_doc_ids(index_dir: PathLike, doc_ids: Sequence[int | str | None] | None) -> None:
    """Write doc_ids.json (the user's ids in pid order, None for removed passages), or remove it when the ids are
    just 0..P-1 (None)."""
    path = Path(index_dir) / DOC_IDS_FILE
    if doc_ids is None:
        path.unlink(missing_ok=True)
        return
    _write_json(path, list(doc_ids), indent=None)


def write_documents(index_dir: PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Write documents.jsonl, one JSON object ({"id", "text", "metadata"}) per line in pid order, through a temporary
    sibling. Call before metadata.json."""
    with atomic_write(Path(index_dir) / DOCUMENTS_FILE, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")


def write_chunk_embeddings(index_dir: PathLike, chunk_idx: int, embeddings: Tensor, doclens: Sequence[int]) -> None:
    """Build-time: a chunk's embeddings (fp16) and doclens, kept on disk until the codec exists to compress them.

    The embeddings go to a plain .npy file so that `ChunkEmbeddings.rows` can map any window of it alone; the
    doclens (and the shape, checked on reading) follow in a JSON file. Shapes: embeddings (sum(doclens), d).
    """
    doclens = [int(x) for x in doclens]
    if sum(doclens) != embeddings.size(0) or embeddings.dim() != 2:
        raise ValueError(f"doclens sum to {sum(doclens):,} but chunk {chunk_idx} has embeddings of shape "
                         f"{tuple(embeddings.shape)}")
    write_rows(Path(index_dir) / embeddings_file(chunk_idx), embeddings.size(0), embeddings.size(1), [embeddings])
    _write_json(Path(index_dir) / embeddings_doclens_file(chunk_idx),
                {"shape": list(embeddings.shape), "doclens": doclens}, indent=None)


class ChunkEmbeddings:
    """Build-time fp16 embeddings on disk (a chunk's, with its doclens, or the k-means sample's), read a window at
    a time: each `rows(start, end)` maps just that window, and unmapping it (dropping the tensor) takes its pages
    out of this process's memory. One mapping of the whole file would keep every page read in it resident until
    the end, a whole chunk's worth."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, int], doclens: list[int] | None = None):
        self.path, self.offset, self.shape, self.doclens = path, offset, shape, doclens

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, end: int) -> Tensor:
        """Rows start..end-1, memory-mapped (copy-on-write: never written back). Shapes: -> (end - start, d) fp16."""
        start, end = max(0, start), min(end, self.shape[0])
        if end <= start:
            return torch.empty(0, self.shape[1], dtype=torch.float16)
        row_bytes = self.shape[1] * 2
        window = np.memmap(self.path, dtype=np.float16, mode="c", offset=self.offset + start * row_bytes,
                           shape=(end - start, self.shape[1]))
        return torch.from_numpy(window)

    def windows(self, size: int):
        """(start, rows) for consecutive windows of `size` rows."""
        for start in range(0, self.shape[0], size):
            yield start, self.rows(start, start + size)

    def take(self, wanted: Tensor, size: int):
        """The rows at `wanted` (ascending, repeats allowed), a piece (a copy) per window of `size` rows that holds
        any of them; the other windows are not mapped, and each is unmapped before the next.
        Shapes: wanted (m,) int64 -> pieces (m_i, d) fp16, sum(m_i) = m."""
        bounds = torch.searchsorted(wanted, torch.arange(0, self.shape[0] + size, size)).tolist()
        for start, a, b in zip(range(0, self.shape[0], size), bounds, bounds[1:]):
            if b > a:
                window = self.rows(start, start + size)
                piece = window[wanted[a:b] - start]
                del window  # unmapped: its pages leave this process's memory
                yield piece


def write_rows(path: PathLike, num_rows: int, dim: int, pieces: Iterable[Tensor]) -> None:
    """Build-time: a (num_rows, dim) fp16 .npy written piece by piece, so that it is never whole in memory, through
    a temporary name. Raises ValueError when the pieces do not add up to that shape (nothing is left behind).
    Shapes: each piece (m, dim), sum of m = num_rows."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
              "shape": (int(num_rows), int(dim))}
    written = 0
    with atomic_write(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for piece in pieces:
            if piece.dim() != 2 or piece.size(1) != dim:
                raise ValueError(f"cannot write rows of shape {tuple(piece.shape)} into {path}: {dim} columns expected")
            f.write(piece.detach().cpu().half().contiguous().numpy().data)
            written += piece.size(0)
        if written != num_rows:
            raise ValueError(f"{path} was to hold {num_rows:,} rows, but {written:,} were given")


def read_rows(path: PathLike) -> ChunkEmbeddings | None:
    """A 2-D fp16 .npy (from write_rows or write_chunk_embeddings) for window reads, or None when it is absent,
    unreadable or shorter than its header says. Reads only the header."""
    path = Path(path)
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # maps the file, reads only its header
        offset, shape = header.offset, tuple(int(x) for x in header.shape)
        ok = header.dtype == np.float16 and header.flags.c_contiguous and len(shape) == 2
        del header
        if not ok or path.stat().st_size != offset + shape[0] * shape[1] * 2:
            return None
    except (OSError, ValueError):
        return None
    return ChunkEmbeddings(path, offset, shape)


def read_chunk_embeddings(index_dir: PathLike, chunk_idx: int) -> ChunkEmbeddings | None:
    """What write_chunk_embeddings wrote, or None when it is absent, incomplete or unreadable (then the chunk is
    encoded again). Reads only the .npy header and the doclens; `ChunkEmbeddings.rows` reads the embeddings."""
    side = Path(index_dir) / embeddings_doclens_file(chunk_idx)
    if not side.is_file():
        return None
    try:
        meta = load_json(side)
        shape, doclens = tuple(int(x) for x in meta["shape"]), [int(x) for x in meta["doclens"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stored = read_rows(Path(index_dir) / embeddings_file(chunk_idx))
    if stored is None or stored.shape != shape or sum(doclens) != shape[0]:
        return None
    stored.doclens = doclens
    return stored


def remove_chunk_embeddings(index_dir: PathLike, chunk_idx: int) -> None:
    (Path(index_dir) / embeddings_doclens_file(chunk_idx)).unlink(missing_ok=True)  # first: no half pair looks whole
    (Path(index_dir) / embeddings_file(chunk_idx)).unlink(missing_ok=True)


def remove_build_files(index_dir: PathLike) -> list[str]:
    """Delete every build-time file left in `index_dir` (the k-means sample, chunk embeddings, and the
    `N.embeddings.build.pt` files of earlier versions, which a resumed build does not read). Returns the names."""
    names = sorted(p.name for p in Path(index_dir).iterdir() if _BUILD_FILE.match(p.name))
    for name in names:
        (Path(index_dir) / name).unlink(missing_ok=True)
    return names


def codec_is_complete(index_dir: PathLike) -> bool:
    """Whether the codec files and plan.json were written (a resumed build can skip k-means)."""
    index_dir = Path(index_dir)
    return all((index_dir / n).is_file() for n in (PLAN_FILE, CENTROIDS_FILE, BUCKETS_FILE, AVG_RESIDUAL_FILE))


# --------------------------------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    try:
        return load_json(path, what="index file")
    except FileNotFoundError:
        raise _bad(path, "is missing; the index is incomplete (was its build interrupted?)") from None
    except ValueError as e:
        raise IndexFormatError(f"{e}. {REBUILD}") from e


def _read_pt(path: Path, mmap: bool = False) -> Any:
    if not path.is_file():
        raise _bad(path, "is missing; the index is incomplete (was its build interrupted?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise _bad(path, f"cannot be read ({type(e).__name__}: {str(e)[:200]}); it is corrupt or was cut short") from e


def _expect(path: Path, t: Any, dtype: torch.dtype, shape: tuple, what: str) -> Tensor:
    """Check a tensor's dtype and shape (None in `shape` matches any size)."""
    ok = isinstance(t, Tensor) and t.dtype == dtype and t.dim() == len(shape)
    ok = ok and all(want is None or want == got for want, got in zip(shape, t.shape))
    if not ok:
        want = tuple("*" if s is None else s for s in shape)
        raise _bad(path, f"holds {_describe(t)} for {what}, but a {dtype} tensor of shape {want} was expected")
    return t


def _check_fields(path: Path, data: Any, keys: Sequence[str], optional: Sequence[str] = ()) -> dict:
    if not isinstance(data, dict):
        raise _bad(path, f"holds {_describe(data)}, not a JSON object")
    for key in keys:
        if key not in data and key not in optional:
            raise _bad(path, f"has no '{key}' field")
        if key == "config" and not isinstance(data[key], dict):
            raise _bad(path, f"has config={data[key]!r}, not a JSON object")
        if key in data and key != "config" and not isinstance(data[key], (int, float)):
            raise _bad(path, f"has {key}={data[key]!r}, not a number")
    return data


def read_plan(index_dir: PathLike) -> dict:
    """plan.json as a dict, its fields checked."""
    path = Path(index_dir) / PLAN_FILE
    return _check_fields(path, _read_json(path), PLAN_KEYS)


def read_metadata(index_dir: PathLike) -> dict:
    """metadata.json as a dict: counts are ints, config holds a valid dim and nbits."""
    path = Path(index_dir) / METADATA_FILE
    if not path.is_file():
        raise _bad(path, "is missing: this is not a complete index (an interrupted build, or the wrong folder)",
                   "Check the path, or (re)build it with Indexer.index(name, collection, overwrite=True).")
    meta = _check_fields(path, _read_json(path), METADATA_KEYS)
    for key in ("num_chunks", "num_partitions", "num_embeddings"):
        if not _is_int(meta[key]) or meta[key] < 0:
            raise _bad(path, f"has {key}={meta[key]!r}; a non-negative integer was expected")
    config = meta["config"]
    dim, nbits = (config.get("dim"), config.get("nbits")) if isinstance(config, dict) else (None, None)
    if not (_is_int(dim) and _is_int(nbits) and dim > 0 and nbits > 0 and dim * nbits % 8 == 0):
        raise _bad(path, f"has config dim={dim!r}, nbits={nbits!r}; positive ints with dim * nbits % 8 == 0 "
                   "were expected")
    return meta


def read_codec(index_dir: PathLike, dim: int, nbits: int, num_partitions: int) -> Codec:
    """centroids.pt, buckets.pt and avg_residual.pt, checked against dim, nbits and num_partitions."""
    index_dir = Path(index_dir)
    path = index_dir / CENTROIDS_FILE
    what = "the centroids (C and dim from metadata.json)"
    centroids = _expect(path, _read_pt(path), torch.float16, (num_partitions, dim), what)
    path = index_dir / BUCKETS_FILE
    buckets = _read_pt(path)
    if not (isinstance(buckets, (tuple, list)) and len(buckets) == 2):
        raise _bad(path, f"holds {_describe(buckets)}; a tuple (bucket_cutoffs, bucket_weights) was expected")
    what = f"(nbits={nbits} in metadata.json)"
    cutoffs = _expect(path, buckets[0], torch.float32, (2**nbits - 1,), f"bucket_cutoffs {what}")
    weights = _expect(path, buckets[1], torch.float32, (2**nbits,), f"bucket_weights {what}")
    path = index_dir / AVG_RESIDUAL_FILE
    avg = _read_pt(path)
    if not (isinstance(avg, Tensor) and avg.numel() == 1 and avg.is_floating_point()):
        raise _bad(path, f"holds {_describe(avg)}; a one-element float tensor was expected")
    return Codec(centroids, cutoffs, weights, avg.float().reshape(()))


def read_chunk_metadata(index_dir: PathLike, chunk_idx: int) -> dict:
    """`k.metadata.json`; embedding_offset may be absent (a chunk not yet finalised)."""
    path = Path(index_dir) / chunk_metadata_file(chunk_idx)
    meta = _check_fields(path, _read_json(path), CHUNK_KEYS, optional=("embedding_offset",))
    for key in CHUNK_KEYS:
        if key in meta and (not _is_int(meta[key]) or meta[key] < 0):
            raise _bad(path, f"has {key}={meta[key]!r}; a non-negative integer was expected")
    return meta


def read_doclens(index_dir: PathLike, chunk_idx: int) -> Tensor:
    """`doclens.k.json` as int64 (passages,)."""
    path = Path(index_dir) / doclens_file(chunk_idx)
    data = _read_json(path)
    if not isinstance(data, list) or not all(_is_int(x) and x >= 0 for x in data):
        raise _bad(path, "does not hold a list of non-negative integers (embeddings per passage)")
    return torch.tensor(data, dtype=torch.int64)


def read_chunk(index_dir: PathLike, chunk_idx: int, dim: int, nbits: int, mmap: bool = False) -> Chunk:
    """One chunk's four files, checked against each other: len(doclens) == num_passages and
    sum(doclens) == num_embeddings == rows of codes and of residuals. `mmap=True` memory-maps codes/residuals."""
    index_dir = Path(index_dir)
    meta = read_chunk_metadata(index_dir, chunk_idx)
    doclens = read_doclens(index_dir, chunk_idx)
    path, n = index_dir / doclens_file(chunk_idx), meta["num_embeddings"]
    if len(doclens) != meta["num_passages"] or int(doclens.sum()) != n:
        raise _bad(path, f"lists {len(doclens):,} passages with {int(doclens.sum()):,} embeddings but "
                   f"{chunk_metadata_file(chunk_idx)} says {meta['num_passages']:,} passages and {n:,} embeddings")
    path = index_dir / codes_file(chunk_idx)
    codes = _expect(path, _read_pt(path, mmap), torch.int32, (n,), f"the codes of {n:,} embeddings")
    path = index_dir / residuals_file(chunk_idx)
    shape = (n, packed_dim(dim, nbits))
    what = f"residuals (dim={dim}, nbits={nbits} in metadata.json)"
    residuals = _expect(path, _read_pt(path, mmap), torch.uint8, shape, what)
    return Chunk(meta, doclens, codes, residuals)


def read_ivf(index_dir: PathLike, num_partitions: int) -> tuple[Tensor, Tensor]:
    """ivf.pid.pt as (ivf int32, ivf_lengths int64 (C,)); ivf may hold padding after sum(ivf_lengths)."""
    path = Path(index_dir) / IVF_FILE
    pair = _read_pt(path)
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise _bad(path, f"holds {_describe(pair)}; a tuple (ivf, ivf_lengths) was expected")
    ivf = _expect(path, pair[0], torch.int32, (None,), "the ivf")
    lengths = pair[1]
    if isinstance(lengths, Tensor) and lengths.dim() == 1 and lengths.numel() != num_partitions:
        raise _bad(path, f"has {lengths.numel():,} lists but metadata says {num_partitions:,} partitions; the index "
                   "is incomplete")
    lengths = _expect(path, lengths, torch.int64, (num_partitions,), "ivf_lengths")
    if (lengths < 0).any() or int(lengths.sum()) > ivf.numel():
        raise _bad(path, f"has list lengths summing to {int(lengths.sum()):,} (or negative) for {ivf.numel():,} pids")
    return ivf, lengths


def read_documents(index_dir: PathLike) -> list[dict] | None:
    """documents.jsonl's records in pid order, each checked to be {"id", "text": str, "metadata": object} (metadata
    `{}` when the line has none), or None when the index stores none. Whether they agree with the index's ids is
    the caller's check (`bad_documents` words its error).
    """
    path = Path(index_dir) / DOCUMENTS_FILE
    if not path.is_file():
        return None
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise bad_documents(path, f"line {line_no} is not JSON ({e})") from e
            if not isinstance(record, dict) or not isinstance(record.get("text"), str) \
                    or not isinstance(record.get("metadata", {}), dict) or "id" not in record:
                raise bad_documents(path, f"line {line_no} is not an object with id, text (str) and metadata (object)")
            records.append({"id": record["id"], "text": record["text"], "metadata": record.get("metadata", {})})
    return records


def bad_documents(path: Path, problem: str) -> IndexFormatError:
    """The error for a documents.jsonl that cannot be used with its index (search works without the file)."""
    return _bad(path, f"{problem}; it does not belong to this index", DOCUMENTS_FIX)


def read_doc_ids(index_dir: PathLike, num_passages: int, listed: bool = False,
                 doclens: Tensor | None = None) -> list[int | str | None] | None:
    """The user's document ids in pid order (doc_ids.json; None for removed passages), or None when the index has
    none (ids are pids).

    Args:
        listed: metadata.json says the index has doc_ids.json (its "doc_ids" key); then a missing file raises.
        doclens: int64 (P,); when given, a null id is accepted only for a removed passage (doclen 0).
    """
    path = Path(index_dir) / DOC_IDS_FILE
    if not path.exists():
        if listed:
            raise _bad(path, "is missing, but metadata.json says this index has its own document ids; without it "
                             "search would return positions instead of your ids. Restore the file")
        return None
    ids = _read_json(path)
    if not isinstance(ids, list) or not all(x is None or _is_int(x) or isinstance(x, str) for x in ids):
        raise _bad(path, "does not hold a list of document ids (ints, strings, or null for removed passages)")
    if len(ids) != num_passages:
        raise _bad(path, f"has {len(ids):,} ids for {num_passages:,} passages")
    live = [x for x in ids if x is not None]
    if len(set(live)) != len(live):
        raise _bad(path, "has repeated document ids")
    if doclens is not None and len(live) != len(ids):
        unnamed = [pid for pid, x in enumerate(ids) if x is None and doclens[pid] > 0]
        if unnamed:
            raise _bad(path, f"has no id (null) for pid {unnamed[0]:,}, which holds embeddings; only removed "
                       "passages (doclen 0) may have none")
    return ids


# --------------------------------------------------------------------------------------------------- helpers


def chunk_is_complete(index_dir: PathLike, chunk_idx: int) -> bool:
    """Whether chunk k was fully written (its metadata file, written last, reads and agrees with its doclens):
    a resumed build can skip it. Codes and residuals are only checked for presence, not loaded."""
    index_dir = Path(index_dir)
    if not all((index_dir / f(chunk_idx)).is_file() for f in (codes_file, residuals_file)):
        return False
    try:
        meta, doclens = read_chunk_metadata(index_dir, chunk_idx), read_doclens(index_dir, chunk_idx)
    except IndexFormatError:
        return False
    return len(doclens) == meta["num_passages"] and int(doclens.sum()) == meta["num_embeddings"]


def is_complete(index_dir: PathLike) -> bool:
    """Whether `index_dir` holds a finished index: metadata.json reads, and every file it implies exists."""
    index_dir = Path(index_dir)
    try:
        meta = read_metadata(index_dir)
    except IndexFormatError:
        return False
    names = [CENTROIDS_FILE, BUCKETS_FILE, AVG_RESIDUAL_FILE, IVF_FILE]
    return all((index_dir / n).is_file() for n in names) and all(
        chunk_is_complete(index_dir, k) for k in range(meta["num_chunks"])
    )


def remove_index_files(index_dir: PathLike) -> list[str]:
    """Delete the index files in `index_dir` (metadata.json first, so it never marks a half-deleted index
    complete), and our leftover temporary files; other files and the folder itself stay. Returns the names."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return []
    fixed = [METADATA_FILE, PLAN_FILE, CENTROIDS_FILE, BUCKETS_FILE, AVG_RESIDUAL_FILE, IVF_FILE, DOC_IDS_FILE,
             DOCUMENTS_FILE]
    names = [n for n in fixed if (index_dir / n).is_file()]
    names += sorted(p.name for p in index_dir.iterdir()
                   if _INDEX_FILE.match(p.name) or _BUILD_FILE.match(p.name) or _TEMP_FILE.match(p.name))
    for name in names:
        (index_dir / name).unlink(missing_ok=True)
    logger.debug("Removed %d index files from %s", len(names), index_dir)
    return names
