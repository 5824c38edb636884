"""verify_index(): check an index folder end to end and report every problem, not just the first.

Checks: every file metadata.json implies is present and readable; each chunk's codes, residuals and doclens agree
with its metadata and the chunks are contiguous; metadata.json's totals as loosely as colbert-ai writes them
(`format.totals_problems`); codes lie in [0, C); document ids are unique and one per passage; the IVF equals the
one rebuilt from the codes; no chunk file lies beyond num_chunks; removed passages (doclen 0) have a null id. Codes
and residuals are memory-mapped, so memory stays small; the IVF rebuild reads every code once.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from colbert.errors import IndexFormatError
from colbert.indexing import format as index_format
from colbert.indexing import versions
from colbert.indexing.ivf import build_ivf

logger = logging.getLogger(__name__)

_CHUNK_FILE = re.compile(r"^(?:(\d+)\.(?:codes|residuals)\.pt|doclens\.(\d+)\.json|(\d+)\.metadata\.json)$")


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
    problems += _offsets(path, meta, chunks)
    doclens = torch.cat([c.doclens for c in chunks]) if chunks else torch.zeros(0, dtype=torch.int64)
    codes = torch.cat([c.codes for c in chunks]) if chunks else torch.zeros(0, dtype=torch.int32)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= C):
        problems.append(f"{path} has codes in [{int(codes.min())}, {int(codes.max())}], outside [0, {C:,}) "
                        "(the number of centroids)")
        return problems
    attempt(lambda: index_format.read_doc_ids(path, doclens.numel(), bool(meta.get(index_format.DOC_IDS_KEY)),
                                              doclens))
    stored = attempt(lambda: index_format.read_ivf(path, C))
    if stored is not None:
        problems += _ivf_problems(path, stored, build_ivf(codes, doclens, C))
    return problems


def _stray_chunk_files(path: Path, num_chunks: int) -> list[str]:
    strays = []
    for p in sorted(path.iterdir()):
        match = _CHUNK_FILE.match(p.name)
        if match and int(next(g for g in match.groups() if g is not None)) >= num_chunks:
            strays.append(p.name)
    if not strays:
        return []
    return [f"{path} holds chunk files beyond the {num_chunks} chunks metadata.json lists: {', '.join(strays[:6])}"]


def _offsets(path: Path, meta: dict, chunks: list[index_format.Chunk]) -> list[str]:
    problems, passages = [], 0
    for k, chunk in enumerate(chunks):
        where = path / index_format.chunk_metadata_file(k)
        if chunk.metadata["passage_offset"] != passages:
            problems.append(f"{where} starts at passage {chunk.metadata['passage_offset']:,} but the chunks before "
                            f"it end at {passages:,}")
        passages += chunk.metadata["num_passages"]
    return problems + index_format.totals_problems(path, meta, [c.metadata for c in chunks])


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
