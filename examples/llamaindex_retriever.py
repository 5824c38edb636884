"""LlamaIndex over a colbert index: ColBERTRetriever returning NodeWithScore, ColBERTRerank as a postprocessor.

    python examples/llamaindex_retriever.py --checkpoint colbert-ir/colbertv2.0 --docs 300

Indexes the first --docs SciFact passages (../shared/data/scifact) with their texts stored, retrieves nodes for a
query, and reranks them with ColBERTRerank (no LLM needed). Needs `pip install colbert-ai[llamaindex]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from colbert import ColBERTConfig, Indexer, Run, RunConfig
from colbert.data import Collection
from colbert.integrations.llamaindex import ColBERTRerank, ColBERTRetriever

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="colbert-ir/colbertv2.0")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--root", default=tempfile.mkdtemp(prefix="colbert-llamaindex-"))
    parser.add_argument("--query", default="Anemia is associated with increased mortality in heart failure.")
    args = parser.parse_args()

    full = Collection(path=SCIFACT / "collection.tsv")
    docs = {full.id_of(p): full[p] for p in range(args.docs)}
    with Run().context(RunConfig(nranks=1, root=args.root, experiment="llamaindex")):
        index = Indexer(args.checkpoint, config=ColBERTConfig(nbits=2), verbose=0).index(
            "scifact", docs, store_documents=True, overwrite=True)

    retriever = ColBERTRetriever.from_index(index, k=10)
    nodes = asyncio.run(retriever.aretrieve(args.query))  # retriever.retrieve(...) in sync code
    for n in nodes[:5]:
        print(f"{n.node.metadata['rank']:>2}  {n.node.node_id:>10}  {n.score:6.2f}  {n.node.get_content()[:70]}")
    rerank = ColBERTRerank(checkpoint=retriever.searcher.checkpoint, top_n=3)
    print("reranked:")
    for n in rerank.postprocess_nodes(nodes, query_str=args.query):
        print(f"{n.score:6.2f}  {n.node.node_id:>10}  {n.node.get_content()[:70]}")


if __name__ == "__main__":
    main()
