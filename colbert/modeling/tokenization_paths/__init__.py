"""The reference's modules under `colbert.modeling.tokenization.*` (query_tokenization, doc_tokenization, utils).

`colbert/modeling/tokenization.py` is a module; it lists this folder as its `__path__`, so
`import colbert.modeling.tokenization.query_tokenization` finds the files here. Each only re-exports.
"""
