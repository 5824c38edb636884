"""Adapters for RAG frameworks, each an optional extra imported only on its own:

- `colbert.integrations.langchain` (`pip install colbert[langchain]`): ColBERTRetriever, ColBERTReranker;
- `colbert.integrations.llamaindex` (`pip install colbert[llamaindex]`): ColBERTRetriever, ColBERTRerank.

See docs/integrations.md.
"""
