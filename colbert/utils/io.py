"""Atomic writes and checked reads: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where the OS does not allow it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; on success, rename it over `path`.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> with atomic_write(d / "a.txt") as f:
        ...     _ = f.write("hello")
        >>> (d / "a.txt").read_text()
        'hello'
    """
    path = Path(path)
    tmp = _tmp_sibling(path)
    binary = "b" in mode
    try:
        with open(tmp, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj, path)` through a temporary sibling and a rename."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 4) -> None:
    """Write `obj` as JSON (trailing newline) through a temporary sibling and a rename."""
    with atomic_write(path, "w") as f:
        f.write(json.dumps(obj, indent=indent) + "\n")


def load_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read JSON, with errors that name the file and say what to do."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON ({e}); it is corrupt or was cut short") from e
