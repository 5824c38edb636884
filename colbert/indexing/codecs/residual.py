"""The reference's `colbert.indexing.codecs.residual`: ResidualCodec, which is colbert.indexing.codec's.

Differences (docs/compat.md): `compress(embs)` returns (codes, residuals) rather than a ResidualEmbeddings, and
`decompress(codes, residuals)` takes them apart; `ResidualCodec.load(index_path)` is the same.
"""

from colbert.indexing.codec import ResidualCodec

__all__ = ["ResidualCodec"]
