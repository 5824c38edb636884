"""The few exception types callers catch.

Each subclasses the builtin a caller would otherwise expect (ValueError, FileNotFoundError), so existing
`except ValueError:` code keeps working.
"""

from __future__ import annotations


class ColBERTError(Exception):
    """Base class of every error this library raises on purpose."""


class CheckpointError(ColBERTError, ValueError):
    """A checkpoint folder or hub name is missing files, has corrupt files, or disagrees with its config."""


class IndexFormatError(ColBERTError, ValueError):
    """An index on disk is missing files, has corrupt files, or disagrees with its metadata."""


class IndexExistsError(ColBERTError, FileExistsError):
    """An index already exists where a new one would be written and `overwrite` does not allow replacing it."""
