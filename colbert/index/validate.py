"""The rules of a valid index, written once: `verify_index()` reports every problem, `LoadedIndex.open` raises the
first of the same lists (the structural ones; verification also rebuilds the IVF).

Checks: every file metadata.json implies is present and readable; each chunk's codes, residuals and doclens agree
with its metadata and the chunks are contiguous; metadata.json's totals as loosely as colbert-ai writes them
(`totals_problems`); codes lie in [0, C); document ids are unique and one per passage, and removed passages
(doclen 0) are the only ones with a null id; the IVF equals the one rebuilt from the codes; no chunk file lies
beyond num_chunks. Codes and residuals are memory-mapped, so memory stays small; the IVF rebuild reads every code
once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from colbert.errors import IndexFormatError
from colbert.index import format as index_format
from colbert.index import versions
from colbert.index.ivf import build_ivf

logger = logging.getLogger(__name__)

def verify_index(path: str | os.PathLike, raise_on_error: bool = False) -> list[str]:
    """Check the index at `path` and list its problems.

    Args:
        path: the index folder.
        raise_on_error: raise instead of returning when something is wrong.

    Returns:
        One sentence per problem, each naming the file; empty when the index is sound.

    Raises:
        IndexFormatError: with `raise_on_error`, listing every problem.

    Example:
        >>> verify_index("/no/such/index")
        ['/no/such/index is not a folder']
    """
    problems, pin = versions.read_consistent(path, _problems)
    if pin is not None:
        pin.close()
    if problems:
        logger.warning("%s has %d problem(s):\n%s", path, len(problems), "\n".join(problems))
        if raise_on_error:
            raise IndexFormatError(f"{path} failed verification ({len(problems)} problems):\n- " +
                                   "\n- ".join(problems))
    return problems


def _problems(path: Path) -> list[str]:
    if not path.is_dir():
        return [f"{path} is not a folder"]
    problems: list[str] = []

    def attempt(read: Callable[[], Any]) -> Optional[Any]:
        try:
            return read()
        except IndexFormatError as e:
            problems.append(str(e))
            return None

    meta = attempt(lambda: index_format.read_metadata(path))
    if meta is None:
        return problems
    attempt(lambda: index_format.read_plan(path))
    dim, nbits, C = meta["config"]["dim"], meta["config"]["nbits"], meta["num_partitions"]
    attempt(lambda: index_format.read_codec(path, dim, nbits, C))
    chunks = [attempt(lambda k=k: index_format.read_chunk(path, k, dim, nbits, mmap=True))
              for k in range(meta["num_chunks"])]
    problems += _stray_chunk_files(path, meta["num_chunks"])
    if any(c is None for c in chunks):
        return problems  # the checks below would only repeat what is already reported
    problems += chunk_offset_problems(path, meta, [c.metadata for c in chunks])
    code_problems = chunk_code_problems(path, chunks, C)
    if code_problems:
        return problems + code_problems
    doclens = torch.cat([c.doclens for c in chunks]) if chunks else torch.zeros(0, dtype=torch.int64)
    codes = torch.cat([c.codes for c in chunks]) if chunks else torch.zeros(0, dtype=torch.int32)
    attempt(lambda: index_format.read_doc_ids(path, doclens.numel(), bool(meta.get(index_format.DOC_IDS_KEY)),
                                              doclens))
    stored = attempt(lambda: index_format.read_ivf(path, C))
    if stored is not None:
        problems += _ivf_problems(path, stored, build_ivf(codes, doclens, C))
    return problems


def _stray_chunk_files(path: Path, num_chunks: int) -> list[str]:
    numbers = {p.name: index_format.chunk_number(p.name) for p in sorted(path.iterdir())}
    strays = [name for name, k in numbers.items() if k is not None and k >= num_chunks]
    if not strays:
        return []
    return [f"{path} holds chunk files beyond the {num_chunks} chunks metadata.json lists: {', '.join(strays[:6])}"]


def chunk_offset_problems(path: Path, meta: Mapping[str, Any],
                          chunk_metadata: Sequence[Mapping[str, Any]]) -> list[str]:
    """The chunks' passage offsets are contiguous and metadata.json's totals hold (`totals_problems`); checked on
    open and by verify."""
    problems, passages = [], 0
    for k, chunk in enumerate(chunk_metadata):
        where = path / index_format.chunk_metadata_file(k)
        if chunk["passage_offset"] != passages:
            problems.append(f"{where} starts at passage {chunk['passage_offset']:,} but the chunks before "
                            f"it end at {passages:,}")
        passages += chunk["num_passages"]
    return problems + totals_problems(path, meta, chunk_metadata)


def totals_problems(index_dir: str | os.PathLike, meta: Mapping[str, Any],
                    chunk_metas: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong with metadata.json's num_embeddings given the chunks' metadata, as loosely as colbert-ai
    writes it; each chunk's own files are checked by `format.read_chunk`, and they are authoritative.

    Checked: num_embeddings is at least the chunks' total (colbert-ai sizes its buffers by it, so a smaller value
    breaks it). Tolerated (logged at INFO): a larger num_embeddings, because colbert-ai's
    IndexUpdater.persist_to_disk adds the whole index's count to it on every persist; an avg_doclen that no
    longer matches (its updater never rewrites it); embedding_offset values that disagree with the chunks before
    (its updater counts removed embeddings in the offset of a chunk it creates; neither loader reads them).
    """
    total = sum(int(m["num_embeddings"]) for m in chunk_metas)
    path = Path(index_dir) / index_format.METADATA_FILE
    if meta["num_embeddings"] < total:
        return [f"{path} says {meta['num_embeddings']:,} embeddings but its {len(chunk_metas)} chunks hold {total:,}"]
    offsets, embeddings = [], 0
    for k, chunk in enumerate(chunk_metas):
        if chunk.get("embedding_offset", embeddings) != embeddings:
            offsets.append(k)
        embeddings += int(chunk["num_embeddings"])
    if meta["num_embeddings"] > total or offsets:
        logger.info("%s: metadata.json counts %s embeddings for %s in the chunks, %d chunk(s) with a stale "
                    "embedding_offset (as colbert-ai's IndexUpdater leaves them); the chunk files are used",
                    index_dir, f"{meta['num_embeddings']:,}", f"{total:,}", len(offsets))
    return []


def chunk_code_problems(path: Path, chunks: list[index_format.Chunk], num_partitions: int) -> list[str]:
    """Every code names a centroid (checked on open and by verify)."""
    problems = []
    for k, chunk in enumerate(chunks):
        codes = chunk.codes
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= num_partitions):
            problems.append(f"{path / index_format.codes_file(k)} holds codes outside [0, {num_partitions:,}) (the "
                            f"number of centroids): [{int(codes.min())}, {int(codes.max())}]")
    return problems


def ivf_range_problems(path: Path, ivf: torch.Tensor, num_passages: int) -> list[str]:
    """The IVF names only passages of the index (checked on open; verify compares it with the codes)."""
    if ivf.numel() and (int(ivf.min()) < 0 or int(ivf.max()) >= num_passages):
        return [f"{path / index_format.IVF_FILE} holds pids outside [0, {num_passages:,}); it does not belong to "
                "this index"]
    return []


def _ivf_problems(path: Path, stored: tuple, rebuilt: tuple) -> list[str]:
    (ivf, lengths), (expected, expected_lengths) = stored, rebuilt
    where = path / index_format.IVF_FILE
    if not torch.equal(lengths, expected_lengths):
        bad = (lengths != expected_lengths).nonzero().flatten()
        return [f"{where} disagrees with the codes: {bad.numel():,} inverted lists have the wrong length "
                f"(first: centroid {int(bad[0])}, {int(lengths[bad[0]])} pids instead of "
                f"{int(expected_lengths[bad[0]])})"]
    n = int(expected_lengths.sum())
    if not torch.equal(ivf[:n], expected[:n]):
        wrong = int((ivf[:n] != expected[:n]).sum())
        return [f"{where} disagrees with the codes: {wrong:,} of its {n:,} pids differ from the IVF rebuilt from "
                "the codes"]
    return []
