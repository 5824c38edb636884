"""The reference's `colbert.modeling.tokenization.query_tokenization`."""

from colbert.modeling.tokenization import QueryTokenizer

__all__ = ["QueryTokenizer"]
