"""Explanations, token by token: the public path of colbert.modeling.explain, where they are computed (beside the
Checkpoint that `Checkpoint.explain` and `Searcher.explain` encode with)."""

from colbert.modeling.explain import (Explanation, Match, build_explanation, document_tokens, explain_vectors,
                                      kept_positions, marker_names, query_tokens, tokenize_document)

__all__ = ["Explanation", "Match", "build_explanation", "document_tokens", "explain_vectors", "kept_positions",
           "marker_names", "query_tokens", "tokenize_document"]
