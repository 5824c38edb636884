"""The reference's `colbert.indexing.codecs.residual_embeddings`, kept at its path: an alias of
colbert.index.residual_embeddings (the index's own data, below indexing/ and search/)."""

import sys

from colbert.index import residual_embeddings as _moved

sys.modules[__name__] = _moved
