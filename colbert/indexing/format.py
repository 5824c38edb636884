"""Moved to colbert.index.format (issue 19): an alias of it, kept while other branches still import this path."""

import sys

from colbert.index import format as _moved

sys.modules[__name__] = _moved
