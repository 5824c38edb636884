"""Request and response bodies: the JSON contract of the service (docs/serving.md), checked by pydantic.

Types and shapes are checked here; limits that the operator sets (k, batch size, text length) are checked by
colbert.server.limits, so that their messages can name the flag that raises them.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

DocId = Union[StrictInt, StrictStr]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class SearchRequest(Request):
    query: Optional[StrictStr] = Field(None, description="One query; or send `queries`.")
    queries: Optional[list[StrictStr]] = Field(None, description="Several queries, answered in order.")
    k: StrictInt = Field(10, description="Results per query.")
    index: Optional[StrictStr] = Field(None, description="The served index; required when several are served.")
    doc_ids: Optional[list[DocId]] = Field(None, description="Search only among these documents (scored exactly).")
    include_text: bool = Field(False, description="Add each result's text (when the server knows it).")
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="0 (plain search) to 1: pick the k results by "
                             "maximal marginal relevance among the best candidates (docs/diversity.md).")


class RerankRequest(Request):
    query: StrictStr
    documents: Optional[list[StrictStr]] = Field(None, description="Texts to rerank (encoded by the server).")
    doc_ids: Optional[list[DocId]] = Field(None, description="Documents of the index to rerank, from their stored "
                                           "embeddings (not encoded again).")
    k: StrictInt = Field(10, description="Results to return (at most the number of documents).")
    index: Optional[StrictStr] = None
    include_text: bool = False


class EncodeRequest(Request):
    texts: list[StrictStr]
    kind: Literal["query", "document"] = "query"
    index: Optional[StrictStr] = Field(None, description="Whose checkpoint encodes (when several are served).")


class AddRequest(Request):
    documents: dict[StrictStr, StrictStr] = Field(description="{id: text}; ids that are plain integers become "
                                                  "ints in an index of int ids.")
    metadata: Optional[dict[StrictStr, dict]] = Field(None, description="{id: {...}} for an index that stores its "
                                                      "documents (documents.jsonl).")
    index: Optional[StrictStr] = None


class DeleteRequest(Request):
    doc_ids: list[DocId]
    index: Optional[StrictStr] = None


class Hit(BaseModel):
    doc_id: DocId
    rank: int
    score: float
    text: Optional[str] = None
    metadata: Optional[dict] = None


class SearchResponse(BaseModel):
    index: str
    results: Union[list[Hit], list[list[Hit]]]


class RerankTextHit(BaseModel):
    index: int = Field(description="Position in `documents`.")
    score: float
    rank: int


class RerankResponse(BaseModel):
    results: Union[list[RerankTextHit], list[Hit]]
    precision: Optional[str] = Field(None, description="bf16 or fp32: how documents sent as text were encoded.")


class EncodeResponse(BaseModel):
    embeddings: list[list[list[float]]] = Field(description="Per text, its token embeddings (length x dim).")
    lengths: list[int]
    dim: int


class WriteResponse(BaseModel):
    index: str
    added: Optional[list[DocId]] = None
    removed: Optional[list[DocId]] = None
    documents: int = Field(description="Documents in the index after the commit.")
