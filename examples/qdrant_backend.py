"""A colbert index served by Qdrant: export an index, search with payload filters, add and remove documents.

    python examples/qdrant_backend.py --checkpoint colbert-ir/colbertv2.0 --docs 300              # local mode
    python examples/qdrant_backend.py --checkpoint ... --url http://localhost:6333                 # a server

Indexes the first --docs SciFact passages (../shared/data/scifact) with metadata, exports the index into a Qdrant
collection (multivector, MAX_SIM), compares its top-10 with our exact search, filters on metadata, and mirrors an
add and a remove. Local mode (the default, no server) is pure Python: fine for trying it, not for speed. Needs
`pip install colbert-ai[qdrant]`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from qdrant_client import QdrantClient

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.backends.qdrant import QdrantIndex
from colbert.data import Collection

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="colbert-ir/colbertv2.0")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--url", default=None, help="a Qdrant server; default local mode in memory")
    parser.add_argument("--root", default=tempfile.mkdtemp(prefix="colbert-qdrant-"))
    parser.add_argument("--query", default="Anemia is associated with increased mortality in heart failure.")
    args = parser.parse_args()

    full = Collection(path=SCIFACT / "collection.tsv")
    docs = {str(full.id_of(p)): full[p] for p in range(args.docs)}  # string ids are kept as they are
    metadata = {doc_id: {"decade": 1990 + 10 * (i % 3)} for i, doc_id in enumerate(docs)}
    with Run().context(RunConfig(nranks=1, root=args.root, experiment="qdrant")):
        index = Indexer(args.checkpoint, config=ColBERTConfig(nbits=2), verbose=0).index(
            "scifact", docs, metadata=metadata, overwrite=True)
    searcher = Searcher(index, verbose=0)

    client = QdrantClient(url=args.url) if args.url else QdrantClient(":memory:")
    store = QdrantIndex.from_index(index, client, "scifact", checkpoint=searcher.checkpoint, recreate=True)
    ids, ranks, scores = store.search(args.query, k=10)
    print("Qdrant top-10 equals exact search:", ids == searcher.search(args.query, k=10, exact=True)[0])
    for doc_id, rank, score in list(zip(ids, ranks, scores))[:3]:
        print(f"{rank:>2}  {doc_id:>10}  {score:6.2f}  {store.document(doc_id)['text'][:70]}")
    print("2010s only:", store.search(args.query, k=3, filter={"decade": 2010})[0])

    store.add({"new-1": "Anemia raises mortality in patients with heart failure."}, metadata={"new-1": {"decade": 2020}})
    store.remove([ids[0]])
    print("after add/remove:", store.search(args.query, k=3)[0])


if __name__ == "__main__":
    main()
