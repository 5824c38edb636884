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


class ColBERTWarning(UserWarning):
    """Base class of every warning this library gives: something a user should act on (or silence).

    Silence them all with `warnings.filterwarnings("ignore", category=colbert.errors.ColBERTWarning)`, or one kind
    by its subclass.
    """


class FreshHeadWarning(ColBERTWarning):
    """A plain encoder (no ColBERT projection head) is used for inference: its head is untrained."""


class DriftWarning(ColBERTWarning):
    """An updated index has grown far past the embeddings its centroids were fitted on: rebuild it."""


class KernelWarning(ColBERTWarning):
    """The native kernels are being compiled (once), or the slower pure-PyTorch kernels are used instead."""


class IndexLockedError(ColBERTError, TimeoutError):
    """Another writer held an index's lock for longer than the lock timeout; nothing was written."""
