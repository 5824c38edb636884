"""Two-stage retrieval without an index: a cheap first stage proposes candidates, ColBERT reorders them.

    python examples/rerank.py "how are residuals compressed?"                   # BM25 top 20, then ColBERT
    python examples/rerank.py "how are residuals compressed?" \
        --candidates docs/indexing.md#pipeline-1,README.md#colbert-0

The first stage is BM25 over the shipped corpus (colbert.training.bm25.BM25), or the candidate ids you give (from
any retriever: Elasticsearch, a vector database...). The second is `Checkpoint.rerank`: exact MaxSim of the query
against each candidate's token vectors, encoded on the fly.
"""

from __future__ import annotations

import argparse

from colbert import Checkpoint
from colbert.demo import default_checkpoint, demo_corpus
from colbert.training.bm25 import BM25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("query", nargs="?", default="how are residuals compressed?")
    parser.add_argument("--candidates", help="comma-separated doc ids to rerank instead of BM25's top --depth")
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates (default 20)")
    parser.add_argument("-k", type=int, default=5, help="results to print (default 5)")
    parser.add_argument("--checkpoint", help="a ColBERT checkpoint folder or hub name")
    args = parser.parse_args()
    corpus = demo_corpus()
    ids, texts = list(corpus), list(corpus.values())

    if args.candidates:
        candidates = [doc_id.strip() for doc_id in args.candidates.split(",") if doc_id.strip()]
        unknown = [c for c in candidates if c not in corpus]
        if unknown:
            parser.error(f"unknown doc ids: {', '.join(unknown)}")
    else:
        candidates = [ids[i] for i in BM25(texts).search(args.query, args.depth)]
    print(f"first stage: {len(candidates)} candidates, top 3: {candidates[:3]}")

    checkpoint = Checkpoint(args.checkpoint or default_checkpoint()[0], verbose=0)
    reranked = checkpoint.rerank(args.query, [corpus[c] for c in candidates], k=args.k)
    print(f"ColBERT top {args.k} for {args.query!r}:")
    for rank, (position, score) in enumerate(reranked, 1):
        doc_id = candidates[position]
        print(f"  {rank}. {score:5.2f}  [{doc_id}] (first stage #{position + 1}) {corpus[doc_id][:90]}")


if __name__ == "__main__":
    main()
