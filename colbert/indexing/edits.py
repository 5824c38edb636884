"""Moved to colbert.index.edits (issue 19): an alias of it, kept while other branches still import this path."""

import sys

from colbert.index import edits as _moved

sys.modules[__name__] = _moved
