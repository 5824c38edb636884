"""The reference's `colbert.modeling.tokenization.doc_tokenization`."""

from colbert.modeling.tokenization import DocTokenizer

__all__ = ["DocTokenizer"]
