"""Train a ColBERT for a few steps, then evaluate it: the training loop end to end in about a minute on a CPU.

    python examples/train_small.py [--steps 4]

The data is made from the shipped corpus: each passage's section heading is a query whose positive is the passage,
with a BM25 hard negative from another section. Training starts from the MiniLM checkpoint (untrained head) and
evaluates MRR@10 before and after by exhaustive MaxSim on the same queries. A few steps show the loop working, not a
better model: for real training see examples/train_scifact.py and docs/training.md.
"""

from __future__ import annotations

import argparse
import tempfile

from colbert import Checkpoint, ColBERTConfig, Run, RunConfig, Trainer
from colbert.demo import demo_corpus, minilm_checkpoint
from colbert.training.bm25 import BM25


def make_triples(corpus: dict[str, str]) -> tuple[dict[str, str], list[list[str]]]:
    """Queries (section headings) and [qid, positive pid, negative pid] triples."""
    ids, texts = list(corpus), list(corpus.values())
    bm25 = BM25(texts)
    queries, triples = {}, []
    for pid, text in corpus.items():
        heading, _, _ = text.partition(": ")
        if not heading or len(heading) > 80 or heading in queries.values():
            continue
        qid = f"q{len(queries)}"
        queries[qid] = heading
        section = pid.rsplit("-", 1)[0]
        negatives = [ids[i] for i in bm25.search(heading, 10) if ids[i].rsplit("-", 1)[0] != section]
        if negatives:
            triples.append([qid, pid, negatives[0]])
    return queries, triples


def mrr_at_10(checkpoint: str, corpus: dict[str, str], queries: dict[str, str], triples: list[list[str]]) -> float:
    model = Checkpoint(checkpoint, verbose=0)
    ids = list(corpus)
    docs = model.docFromText(list(corpus.values()), keep_dims="flatten")[:2]
    total = 0.0
    for qid, positive, _ in triples:
        ranked = [ids[i] for i, _ in model.rerank(queries[qid], docs, k=10)]
        total += 1 / (ranked.index(positive) + 1) if positive in ranked else 0.0
    return total / len(triples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--root", default=tempfile.mkdtemp(prefix="colbert-train-"), help="experiments folder")
    args = parser.parse_args()
    corpus = demo_corpus()
    queries, triples = make_triples(corpus)
    start = str(minilm_checkpoint())
    print(f"{len(triples)} triples; MRR@10 before: {mrr_at_10(start, corpus, queries, triples):.3f}")

    config = ColBERTConfig(bsize=4, nway=2, lr=3e-5, maxsteps=args.steps, doc_maxlen=96, query_maxlen=20,
                           use_ib_negatives=True, warmup=1)
    with Run().context(RunConfig(nranks=1, root=args.root, experiment="train_small")):
        trained = Trainer(triples=triples, queries=queries, collection=corpus, config=config).train(start)
    print(f"after {args.steps} steps ({trained}): MRR@10 {mrr_at_10(trained, corpus, queries, triples):.3f}")


if __name__ == "__main__":
    main()
