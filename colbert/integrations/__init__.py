"""Adapters for RAG frameworks, each an optional extra imported only on its own:

- `colbert.integrations.langchain` (`pip install colbert-ai[langchain]`): ColBERTRetriever, ColBERTReranker;
- `colbert.integrations.llamaindex` (`pip install colbert-ai[llamaindex]`): ColBERTRetriever, ColBERTRerank.

See docs/integrations.md.
"""
