"""LlamaIndex adapters (`pip install colbert-ai[llamaindex]`, which brings llama-index-core).

    from colbert.integrations.llamaindex import ColBERTRerank, ColBERTRetriever

    retriever = ColBERTRetriever.from_index("experiments/default/indexes/scifact", k=5)
    nodes = retriever.retrieve("what causes anemia?")          # [NodeWithScore], or await retriever.aretrieve(...)
    query_engine = RetrieverQueryEngine.from_args(retriever, node_postprocessors=[ColBERTRerank.from_checkpoint(
        "colbert-ir/colbertv2.0", top_n=3)])

Nodes are TextNodes whose id is the document id (as a string), with the text and metadata stored with the index
(plus `doc_id` and `rank`), scored by MaxSim. See docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, List, Optional, Union

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from pydantic import ConfigDict, Field

from colbert.integrations.hits import Hit, MetadataFilter, as_predicate, check_texts_available, search_hits

logger = logging.getLogger(__name__)


def _node(hit: Hit) -> NodeWithScore:
    metadata = {**hit.metadata, "doc_id": hit.doc_id, "rank": hit.rank}
    node = TextNode(id_=str(hit.doc_id), text=hit.text, metadata=metadata,
                    excluded_embed_metadata_keys=["doc_id", "rank"], excluded_llm_metadata_keys=["doc_id", "rank"])
    return NodeWithScore(node=node, score=hit.score)


class ColBERTRetriever(BaseRetriever):
    """A LlamaIndex retriever over a colbert index: `retrieve(query)` returns the top k NodeWithScore.

    Args:
        searcher: a colbert Searcher (see `from_index`).
        k: nodes per query.
        filter: a metadata filter (a dict {key: value} or a function of the metadata dict), applied before scoring;
            matching documents are all scored exactly.
        exact: score every document exactly instead of PLAID.
    """

    def __init__(self, searcher: Any, k: int = 10, filter: MetadataFilter = None, exact: bool = False,
                 **kwargs: Any) -> None:
        check_texts_available(searcher)
        as_predicate(filter)  # a bad filter raises now
        self.searcher, self.k, self.filter, self.exact = searcher, k, filter, exact
        super().__init__(**kwargs)

    @classmethod
    def from_index(cls, index: Union[str, os.PathLike], checkpoint: Optional[str] = None, *, k: int = 10,
                   filter: MetadataFilter = None, **searcher_kwargs: Any) -> ColBERTRetriever:
        """Open `index` with a Searcher (its other arguments as keywords, e.g. collection=, config=)."""
        from colbert.searcher import Searcher

        searcher_kwargs.setdefault("verbose", 0)
        return cls(Searcher(index, checkpoint=checkpoint, **searcher_kwargs), k=k, filter=filter)

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        hits = search_hits(self.searcher, query_bundle.query_str, self.k, self.filter, exact=self.exact)
        return [_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        hits = await asyncio.to_thread(search_hits, self.searcher, query_bundle.query_str, self.k, self.filter,
                                       self.exact)  # encoding and scoring run off the event loop
        return [_node(hit) for hit in hits]


class ColBERTRerank(BaseNodePostprocessor):
    """A LlamaIndex node postprocessor that reranks nodes by MaxSim with a ColBERT checkpoint (no index needed):
    the `top_n` best, best first, their score replaced by the MaxSim score."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    checkpoint: Any = Field(description="a colbert Checkpoint")
    top_n: int = Field(default=3, description="nodes kept")

    @classmethod
    def class_name(cls) -> str:
        return "ColBERTRerank"

    @classmethod
    def from_checkpoint(cls, name: Union[str, os.PathLike], *, top_n: int = 3, **checkpoint_kwargs: Any
                        ) -> ColBERTRerank:
        """Load a checkpoint (a folder or hub name; other Checkpoint arguments as keywords)."""
        from colbert.modeling.checkpoint import Checkpoint

        checkpoint_kwargs.setdefault("verbose", 0)
        return cls(checkpoint=Checkpoint(str(name), **checkpoint_kwargs), top_n=top_n)

    def _postprocess_nodes(self, nodes: List[NodeWithScore],
                           query_bundle: Optional[QueryBundle] = None) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("ColBERTRerank needs the query: call postprocess_nodes(nodes, query_str=...)")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        ranked = self.checkpoint.rerank(query_bundle.query_str, texts, k=self.top_n)
        return [NodeWithScore(node=nodes[i].node, score=score) for i, score in ranked]

    async def _apostprocess_nodes(self, nodes: List[NodeWithScore],
                                  query_bundle: Optional[QueryBundle] = None) -> List[NodeWithScore]:
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)


__all__ = ["ColBERTRerank", "ColBERTRetriever"]
