"""The reference's `colbert.indexing.codecs` package: residual.py, residual_embeddings.py,
residual_embeddings_strided.py, as thin layers over colbert.indexing.codec and the index reader."""
