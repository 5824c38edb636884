"""Moved to colbert.index.loaded (issue 19): an alias of it, kept while other branches still import this path."""

import sys

from colbert.index import loaded as _moved

sys.modules[__name__] = _moved
