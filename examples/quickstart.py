"""Index a small corpus, then search it: the whole API in a dozen lines. Runs offline.

    python examples/quickstart.py [--checkpoint colbert-ir/colbertv2.0]

The corpus is this library's own documentation, shipped with the package (colbert.demo.demo_corpus). Without
--checkpoint, colbert-ir/colbertv2.0 is used when the hub answers, else MiniLM with an untrained head.
"""

from __future__ import annotations

import argparse
import tempfile

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.demo import default_checkpoint, demo_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a ColBERT checkpoint folder or hub name")
    parser.add_argument("--root", default=tempfile.mkdtemp(prefix="colbert-quickstart-"), help="experiments folder")
    args = parser.parse_args()
    checkpoint = args.checkpoint or default_checkpoint()[0]
    corpus = demo_corpus()  # {doc_id: text}

    with Run().context(RunConfig(nranks=1, root=args.root, experiment="quickstart")):
        indexer = Indexer(checkpoint=checkpoint, config=ColBERTConfig(nbits=2, doc_maxlen=180), verbose=0)
        index_path = indexer.index(name="docs", collection=corpus, overwrite=True)
        searcher = Searcher(index="docs", verbose=0)
        for question in ("How do I resume an interrupted index build?", "Which kernels run without a compiler?"):
            ids, ranks, scores = searcher.search(question, k=3)
            print(f"\n{question}")
            for doc_id, rank, score in zip(ids, ranks, scores):
                print(f"  {rank}. {score:5.2f}  [{doc_id}] {corpus[doc_id][:100]}")
    print(f"\nindex: {index_path}")


if __name__ == "__main__":
    main()
