"""LangChain over a colbert index: stored texts and metadata, a filtered retriever, a ColBERT reranker.

    python examples/langchain_rag.py --checkpoint colbert-ir/colbertv2.0 --docs 300

Indexes the first --docs SciFact passages (../shared/data/scifact) with a year-like metadata field, retrieves for
a query with and without a metadata filter, then reranks a wider candidate list with ColBERTReranker inside a
ContextualCompressionRetriever-style pipeline (langchain-core only; no LLM needed). Needs `pip install
colbert[langchain]`. Any ColBERT checkpoint works, e.g. the MiniLM one: python ../shared/compat/build_checkpoint.py
/tmp/minilm-colbert.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from colbert import ColBERTConfig, Indexer, Run, RunConfig
from colbert.data import Collection
from colbert.integrations.langchain import ColBERTReranker, ColBERTRetriever

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="colbert-ir/colbertv2.0")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--root", default=tempfile.mkdtemp(prefix="colbert-langchain-"))
    parser.add_argument("--query", default="Anemia is associated with increased mortality in heart failure.")
    args = parser.parse_args()

    full = Collection(path=SCIFACT / "collection.tsv")
    docs = {full.id_of(p): full[p] for p in range(args.docs)}
    metadata = {doc_id: {"decade": 1990 + 10 * (i % 3), "source": "scifact"} for i, doc_id in enumerate(docs)}
    with Run().context(RunConfig(nranks=1, root=args.root, experiment="langchain")):
        index = Indexer(args.checkpoint, config=ColBERTConfig(nbits=2), verbose=0).index(
            "scifact", docs, metadata=metadata, overwrite=True)

    retriever = ColBERTRetriever.from_index(index, k=5)
    for doc in retriever.invoke(args.query):
        print(f"{doc.metadata['rank']:>2}  {doc.id:>10}  {doc.metadata['score']:6.2f}  {doc.metadata['decade']}  "
              f"{doc.page_content[:70]}")
    print("only the 2010s:")
    for doc in retriever.invoke(args.query, filter={"decade": 2010}):
        print(f"{doc.metadata['rank']:>2}  {doc.id:>10}  {doc.metadata['decade']}  {doc.page_content[:70]}")

    reranker = ColBERTReranker(checkpoint=retriever.searcher.checkpoint, top_n=3)  # reuse the loaded encoder
    candidates = retriever.invoke(args.query, k=20)
    print("reranked from 20 candidates:")
    for doc in reranker.compress_documents(candidates, args.query):
        print(f"{doc.metadata['relevance_score']:6.2f}  {doc.id:>10}  {doc.page_content[:70]}")


if __name__ == "__main__":
    main()
