"""LangChain adapters (`pip install colbert-ai[langchain]`, which brings langchain-core).

    from colbert.integrations.langchain import ColBERTReranker, ColBERTRetriever

    retriever = ColBERTRetriever.from_index("experiments/default/indexes/scifact", k=5)
    docs = retriever.invoke("what causes anemia?")              # or await retriever.ainvoke(...)
    docs[0].metadata                                             # {"doc_id": ..., "score": ..., "rank": 1, ...stored}
    retriever.invoke("anemia", filter={"year": 2019})          # a metadata filter, applied before scoring

    reranker = ColBERTReranker.from_checkpoint("colbert-ir/colbertv2.0", top_n=3)
    best = reranker.compress_documents(candidates, "what causes anemia?")

Documents carry the text and metadata stored with the index (`Indexer.index(..., metadata=...)`), or the text of
the collection the Searcher was given. See docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Optional, Sequence, Union

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun, Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from colbert.integrations.hits import Hit, MetadataFilter, as_predicate, check_texts_available, search_hits

logger = logging.getLogger(__name__)


def _document(hit: Hit) -> Document:
    metadata = {**hit.metadata, "doc_id": hit.doc_id, "score": hit.score, "rank": hit.rank}
    return Document(page_content=hit.text, metadata=metadata, id=str(hit.doc_id))


class ColBERTRetriever(BaseRetriever):
    """A LangChain retriever over a colbert index: `invoke(query)` returns the top k Documents.

    Each Document has `id` (the document id as a string) and metadata holding the stored metadata plus `doc_id`
    (the id as the index keeps it, int or str), `score` (MaxSim) and `rank` (from 1).

    Attributes:
        searcher: a colbert Searcher (see `from_index`).
        k: documents per query; `invoke(query, k=...)` overrides it for one call.
        filter: a metadata filter for every query (a dict {key: value} or a function of the metadata dict);
            `invoke(query, filter=...)` overrides it. Matching documents are all scored exactly.
        exact: score every document exactly instead of PLAID.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Any
    k: int = 10
    filter: Any = None
    exact: bool = False

    def model_post_init(self, context: Any) -> None:
        check_texts_available(self.searcher)
        as_predicate(self.filter)  # a bad filter raises now, not at the first query

    @classmethod
    def from_index(cls, index: Union[str, os.PathLike], checkpoint: Optional[str] = None, *, k: int = 10,
                   filter: MetadataFilter = None, **searcher_kwargs: Any) -> ColBERTRetriever:
        """Open `index` with a Searcher (its other arguments as keywords, e.g. collection=, config=)."""
        from colbert.searcher import Searcher

        searcher_kwargs.setdefault("verbose", 0)
        return cls(searcher=Searcher(index, checkpoint=checkpoint, **searcher_kwargs), k=k, filter=filter)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: Optional[int] = None, filter: MetadataFilter = None) -> list[Document]:
        where = filter if filter is not None else self.filter
        hits = search_hits(self.searcher, query, k if k is not None else self.k, where, exact=self.exact)
        return [_document(hit) for hit in hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: Optional[int] = None, filter: MetadataFilter = None) -> list[Document]:
        where = filter if filter is not None else self.filter
        hits = await asyncio.to_thread(search_hits, self.searcher, query, k if k is not None else self.k, where,
                                       self.exact)  # encoding and scoring run off the event loop
        return [_document(hit) for hit in hits]


class ColBERTReranker(BaseDocumentCompressor):
    """A LangChain document compressor that reranks candidate Documents by MaxSim with a ColBERT checkpoint.

    `compress_documents(documents, query)` returns the `top_n` best, best first, each a copy with
    `metadata["relevance_score"]` set (LangChain's convention for rerankers). No index is needed.

    Attributes:
        checkpoint: a colbert Checkpoint (see `from_checkpoint`).
        top_n: documents kept.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    checkpoint: Any
    top_n: int = 3

    @classmethod
    def from_checkpoint(cls, name: Union[str, os.PathLike], *, top_n: int = 3, **checkpoint_kwargs: Any
                        ) -> ColBERTReranker:
        """Load a checkpoint (a folder or hub name; other Checkpoint arguments as keywords)."""
        from colbert.modeling.checkpoint import Checkpoint

        checkpoint_kwargs.setdefault("verbose", 0)
        return cls(checkpoint=Checkpoint(str(name), **checkpoint_kwargs), top_n=top_n)

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Optional[Callbacks] = None) -> Sequence[Document]:
        documents = list(documents)
        if not documents:
            return []
        ranked = self.checkpoint.rerank(query, [d.page_content for d in documents], k=self.top_n)
        return [_scored(documents[i], score) for i, score in ranked]

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Optional[Callbacks] = None) -> Sequence[Document]:
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)


def _scored(document: Document, score: float) -> Document:
    return Document(page_content=document.page_content, metadata={**document.metadata, "relevance_score": score},
                    id=document.id)


__all__ = ["ColBERTReranker", "ColBERTRetriever"]
