"""The reference's `colbert.search.strided_tensor`, kept at its path: an alias of colbert.index.strided_tensor
(the index's own data, below indexing/ and search/)."""

import sys

from colbert.index import strided_tensor as _moved

sys.modules[__name__] = _moved
