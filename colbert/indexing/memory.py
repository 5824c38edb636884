"""Moved to colbert.indexing.platform (issue 19): an alias of it, kept while other branches still import this path."""

import sys

from colbert.indexing import platform as _moved

sys.modules[__name__] = _moved
