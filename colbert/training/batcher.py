"""Training data: triples resolved against queries and collection, sharded by rank, cut into micro-batches.

Every id is checked once, before the first step, so a bad triple fails fast instead of hours into a run. Ids in
triples match the ids of the queries and collection files by their text: `17`, `"17"` and a collection id read
as the int 17 are the same id; `"doc-17"` is matched as written.

Rank r trains on examples r, r + nranks, r + 2 * nranks, ... in file order (disjoint shards; the reference gave
every rank the same examples). Step s of a rank uses the positions [s * b, (s + 1) * b) of its shard, with b the
per-rank batch size, so the data position is a pure function of the step and resuming needs no reader state.
The triples are read once, in order, as in the reference: to train several epochs, write several shuffled
passes (`mine_hard_negatives(..., passes=n)` does).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from colbert.data import Collection, Examples, Queries

logger = logging.getLogger(__name__)

MAX_REPORTED = 5  # unknown ids quoted in an error message


@dataclass
class Batch:
    """The texts of one micro-batch. Shapes: q_ids/q_mask (B, Lq); d_ids/d_mask (B * nway, Ld); scores
    (B, nway) teacher scores or None."""

    q_ids: Tensor
    q_mask: Tensor
    d_ids: Tensor
    d_mask: Tensor
    scores: Optional[Tensor]


def _id_key(value: Any) -> str:
    return str(value)


def _position_lookup(collection: Collection) -> Callable[[Any], Optional[int]]:
    """pid as written in a triple -> position in the collection, or None when unknown."""
    if collection.ids is None:  # ids are 0..N-1: no table needed (MS MARCO has 8.8M passages)
        n = len(collection)

        def by_number(pid: Any) -> Optional[int]:
            text = _id_key(pid)
            plain = text.isdigit() and (text == "0" or not text.startswith("0"))
            return int(text) if plain and int(text) < n else None

        return by_number
    table = {_id_key(doc_id): pos for pos, doc_id in enumerate(collection.ids)}
    return lambda pid: table.get(_id_key(pid))


def _examples(triples: Any, nway: int) -> Examples:
    if isinstance(triples, Examples):
        return Examples(data=triples.data, nway=nway)
    return Examples.cast(triples, nway=nway)


class TrainingData:
    """Examples `[qid, pid+, pid-, ...]` or `[qid, [pid, score], ...]` with their query and passage texts.

    Args:
        triples: a JSONL path, a list of examples or `colbert.data.Examples`.
        queries: a TSV path, a dict {qid: text} or `colbert.data.Queries`.
        collection: a TSV path, a list or dict of texts, or `colbert.data.Collection`.
        nway: passages per example used for training (the first is the positive).

    Raises:
        ValueError: an example has fewer than nway passages, names an unknown qid or pid, or some examples carry
            teacher scores and others do not.
    """

    def __init__(self, triples: Any, queries: Any, collection: Any, nway: int) -> None:
        examples = _examples(triples, nway)
        self.queries = Queries.cast(queries)
        self.collection = Collection.cast(collection)
        self.nway = nway
        self.where = getattr(examples, "path", None) or "the triples"
        self.qids: list[Any] = []
        self.pids: list[list[int]] = []
        self.scores: Optional[list[list[float]]] = None
        self._resolve(examples)

    def _resolve(self, examples: Examples) -> None:
        qid_of = {_id_key(q): q for q in self.queries.keys()}
        position = _position_lookup(self.collection)
        scored = [isinstance(e[1], list) for e in examples]
        if any(scored) and not all(scored):
            first = scored.index(not scored[0])
            raise ValueError(f"{self.where}: example {first} {'has' if scored[first] else 'lacks'} teacher scores "
                             f"but example 0 {'has' if scored[0] else 'lacks'} them; use one format for every line")
        unknown_q: list[str] = []
        unknown_p: list[str] = []
        self.scores = [] if scored[0] else None
        for i, (qid, *passages) in enumerate(examples):
            pids = [p[0] for p in passages] if self.scores is not None else passages
            if _id_key(qid) not in qid_of:
                unknown_q.append(f"example {i}: qid {qid!r}")
            positions = [position(p) for p in pids]
            unknown_p += [f"example {i}: pid {p!r}" for p, pos in zip(pids, positions) if pos is None]
            self.qids.append(qid_of.get(_id_key(qid)))
            self.pids.append(positions)  # type: ignore[arg-type]
            if self.scores is not None:
                self.scores.append([float(p[1]) for p in passages])
        self._raise_unknown(unknown_q, "queries", len(self.queries))
        self._raise_unknown(unknown_p, "collection", len(self.collection))

    def _raise_unknown(self, unknown: list[str], what: str, size: int) -> None:
        if not unknown:
            return
        more = f" and {len(unknown) - MAX_REPORTED:,} more" if len(unknown) > MAX_REPORTED else ""
        source = getattr(getattr(self, what), "path", None) or f"the {what} given"
        raise ValueError(f"{self.where} names ids that are not in {source} ({size:,} entries): "
                         f"{'; '.join(unknown[:MAX_REPORTED])}{more} (examples counted from 0). Check that the "
                         f"triples were made for these {what} files.")

    def __len__(self) -> int:
        return len(self.pids)

    @property
    def has_scores(self) -> bool:
        return self.scores is not None

    def shard(self, rank: int, nranks: int) -> range:
        """Positions in the triples of the examples rank `rank` trains on."""
        return range(rank, len(self), nranks)

    def steps(self, nranks: int, rank_bsize: int) -> int:
        """Full steps every rank can take: the smallest shard divided by the per-rank batch size."""
        return len(self) // nranks // rank_bsize

    def texts(self, indices: Sequence[int]) -> tuple[list[str], list[str], Optional[list[float]]]:
        """(query texts, nway passage texts per query in order, flat teacher scores or None)."""
        queries = [self.queries[self.qids[i]] for i in indices]
        passages = [self.collection[pos] for i in indices for pos in self.pids[i]]
        scores = None if self.scores is None else [s for i in indices for s in self.scores[i]]
        return queries, passages, scores


def tensorize(data: TrainingData, indices: Sequence[int], query_tokenizer: Any, doc_tokenizer: Any,
              accumsteps: int) -> list[Batch]:
    """The examples at `indices` as `accumsteps` micro-batches of token ids, each padded to its longest passage."""
    micro = len(indices) // accumsteps
    batches = []
    for start in range(0, len(indices), micro):
        queries, passages, scores = data.texts(indices[start:start + micro])
        q_ids, q_mask = query_tokenizer.tensorize(queries)  # (B, Lq)
        d_ids, d_mask = doc_tokenizer.tensorize(passages)  # (B * nway, Ld)
        teacher = None if scores is None else torch.tensor(scores).view(len(queries), data.nway)  # (B, nway)
        batches.append(Batch(q_ids, q_mask, d_ids, d_mask, teacher))
    return batches


def describe_source(source: Any) -> Optional[str]:
    """A path as an absolute string (compared when resuming); None for data given in memory."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.abspath(os.fspath(source))
    path = getattr(source, "path", None)
    return os.path.abspath(path) if isinstance(path, str) else None
