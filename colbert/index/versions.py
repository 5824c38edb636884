"""Versions of an index folder: each change is written beside the index and committed by ONE atomic rename.

An index stays a plain folder `NAME` in the reference's layout (colbert-ai opens it, `mv` and `cp -r` move it).
Every writer (the Indexer's publish, IndexUpdater.persist_to_disk, IndexUpdater.reindex) follows one protocol:

1. lock the current version (`flock` on its folder) and check it is the version the change was made from;
2. write the complete new version into a hidden sibling `.NAME.update-<pid>-<n>` (unchanged files hard-linked);
3. commit: one `renameat2(RENAME_EXCHANGE)` swaps that folder with NAME, so NAME names the whole old index until
   the swap and the whole new one after it, and never nothing;
4. rename the old version, now at the hidden name, to `.NAME.trash-<pid>-<n>` and delete it.

A process killed at any moment leaves NAME as the old or the new version; hidden leftovers are deleted by the next
writer (those still locked by a live writer are left alone). Open memory maps of deleted files stay valid (POSIX).

Readers (`read_consistent`) pin NAME (an open descriptor on its folder, so its identity cannot be reused) before
reading its files and check it is still current after; if a commit happened meanwhile they read again, so they never
mix files of two versions.

Without renameat2 (not Linux, or a filesystem that refuses it) step 3 becomes two renames with NAME missing in
between; a writer killed there leaves `.NAME.old-<pid>-<n>`, which the next writer (or `recover`) renames back.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import re
import shutil
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from colbert.errors import ColBERTError, IndexFormatError, IndexLockedError
from colbert.utils.io import fsync_dir

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a single writer at a time is then the caller's business
    fcntl = None

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_TIMEOUT_S = 60.0  # how long a writer waits for another writer's lock before IndexLockedError
LOCK_POLL_S = 0.05  # how often a waiting writer tries the lock again
READ_ATTEMPTS = 20  # a reader re-reads at most this many times while writers keep committing
GAP_WAIT_S = 0.05  # how long a reader waits for NAME to reappear between the two renames of the fallback commit
_counter = itertools.count()


class IndexChangedError(ColBERTError, RuntimeError):
    """The index on disk is no longer the version a change was made from (another writer committed, or it was
    deleted); nothing was written."""


# --------------------------------------------------------------------------------------------------- primitives


def _libc_renameat2() -> Optional[Callable[..., int]]:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _libc_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> None:
    """Atomically swap the paths `a` and `b` (both must exist): Linux renameat2(RENAME_EXCHANGE).

    Raises:
        NotImplementedError: the OS or the filesystem cannot do it (the caller falls back to two renames).
    """
    if _RENAMEAT2 is None:
        raise NotImplementedError("renameat2 is not available")
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise NotImplementedError(f"renameat2(RENAME_EXCHANGE) is refused here ({os.strerror(err)})")
        raise OSError(err, os.strerror(err), str(a), None, str(b))


class Pin:
    """An open descriptor on a folder: its identity (device, inode) stays its own while the pin is held.

    `is_current()` says whether `path` still names the pinned folder; `locked()` holds an exclusive flock on it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        st = os.fstat(self.fd)
        self.identity = (st.st_dev, st.st_ino)
        self._close = weakref.finalize(self, os.close, self.fd)

    def is_current(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def close(self) -> None:
        self._close()

    def lock(self, wait: bool = True, timeout: Optional[float] = None) -> bool:
        """Take the exclusive lock (flock) on the folder; without `wait`, False when another writer holds it.

        With `wait` and a `timeout` (seconds), IndexLockedError once it has waited that long.
        """
        if fcntl is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait and deadline is None else fcntl.LOCK_NB))
                return True
            except BlockingIOError:
                if not wait:
                    return False
                if time.monotonic() >= deadline:  # type: ignore[operator]
                    holders = lock_holders(self.identity)
                    held_by = f" by process {', '.join(map(str, holders))}" if holders else " by another process"
                    raise IndexLockedError(
                        f"{self.path} is locked{held_by}, which has been writing it for more than {timeout:g} s; "
                        "nothing was written. Wait for that writer, stop it if it hangs (its changes are then "
                        "discarded, the index stays whole), or raise lock_timeout.") from None
                time.sleep(LOCK_POLL_S)

    def unlock(self) -> None:
        if fcntl is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


def lock_holders(identity: tuple[int, int]) -> list[int]:
    """The pids holding a flock on the file with this (st_dev, st_ino), from /proc/locks; [] where unknown."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    dev, ino = identity
    wanted = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    holders = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and "->" not in parts and parts[5] == wanted:
            holders.append(int(parts[4]))
    return holders


def pin_or_none(path: Path) -> Optional[Pin]:
    try:
        return Pin(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):  # PermissionError: folders cannot be opened
        return None


def hidden_sibling(index_path: Path, kind: str) -> Path:
    """`.NAME.<kind>-<pid>-<n>` beside the index: a new name in this process."""
    return index_path.with_name(f".{index_path.name}.{kind}-{os.getpid()}-{next(_counter)}")


def _leftovers(index_path: Path, kinds: str) -> list[Path]:
    pattern = re.compile(rf"^\.{re.escape(index_path.name)}\.({kinds})-\d+-\d+$")
    if not index_path.parent.is_dir():
        return []
    return sorted(p for p in index_path.parent.iterdir() if pattern.match(p.name))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` as `dst` (no data copied), or copy it where links are refused (another filesystem)."""
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------------- readers


def read_consistent(index_path: str | os.PathLike, read: Callable[[Path], T]) -> tuple[T, Optional[Pin]]:
    """Run `read(index_path)` on one version of the index: retried when a writer commits while it runs.

    Returns:
        (what read returned, a Pin on the version it read; None when the path could not be pinned).

    Raises:
        Whatever `read` raises when the index did not change meanwhile (a genuinely broken or missing index).
    """
    index_path = Path(index_path)
    for attempt in range(READ_ATTEMPTS):
        pin = pin_or_none(index_path)
        if pin is None:
            if _leftovers(index_path, "old") and attempt + 1 < READ_ATTEMPTS:
                time.sleep(GAP_WAIT_S)  # a fallback commit is between its two renames
                continue
            return read(index_path), None  # raises the reader's own "missing" error
        try:
            value = read(index_path)
        except (OSError, ValueError):  # IndexFormatError is a ValueError: a file vanished or was swapped under us
            if pin.is_current():
                pin.close()
                raise
            pin.close()
            continue
        if pin.is_current():
            return value, pin
        pin.close()
        logger.debug("%s changed while it was read; reading it again", index_path)
    raise IndexFormatError(f"{index_path} changed {READ_ATTEMPTS} times while it was being read; writers are "
                           "committing faster than it can be opened. Try again when they pause.")


# --------------------------------------------------------------------------------------------------- writers


class Transaction:
    """One writer's change of the index at `index_path`; make it with `transaction(...)`.

    Attributes:
        index_path: the index (NAME).
        dir: where the new version is written (hidden; a fresh `.NAME.update-*` unless the caller gave one).
        current: the current version, pinned and locked for the whole transaction; None when NAME does not exist.
    """

    def __init__(self, index_path: Path, current: Optional[Pin], staging: Optional[Path]) -> None:
        self.index_path, self.current, self.committed = index_path, current, False
        self._own = staging is None
        self.dir = hidden_sibling(index_path, "update") if staging is None else Path(staging)
        self._staging_pin: Optional[Pin] = None
        if self._own:
            self.dir.mkdir()
            self._staging_pin = Pin(self.dir)
            self._staging_pin.lock()  # so that other writers' garbage collection leaves it alone

    def commit(self) -> Pin:
        """THE commit point: NAME becomes the folder written in `dir`, in one atomic step. The old version is
        deleted after. Returns a Pin on the new version."""
        new = Pin(self.dir)
        if self.current is None:
            os.rename(self.dir, self.index_path)  # nothing to replace: one rename
            old = None
        else:
            old = _swap(self.dir, self.index_path)
        self.committed = True
        fsync_dir(self.index_path.parent)
        new.path = self.index_path
        if old is not None:
            _discard(old, self.index_path)
        return new

    def _finish(self) -> None:
        if self._staging_pin is not None:
            self._staging_pin.close()  # closing the descriptor releases its lock
        if self._own and not self.committed:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.current is not None:
            self.current.close()


@contextmanager
def transaction(index_path: str | os.PathLike, base: Optional[Pin] = None,
                staging: Optional[str | os.PathLike] = None,
                lock_timeout: Optional[float] = LOCK_TIMEOUT_S) -> Iterator[Transaction]:
    """Lock the index's current version and prepare a hidden folder for the new one; call `.commit()` when it is
    complete. Leaving the block without committing removes the folder (when we made it) and changes nothing.

    Args:
        index_path: the index (NAME); it may not exist yet.
        base: the version the change was made from (from `read_consistent`); IndexChangedError when NAME is no
            longer that version. None: whatever is current.
        staging: a folder already holding the new version (the Indexer's `.NAME.building`); default a new one.
        lock_timeout: seconds to wait for another writer's lock (None: forever).

    Raises:
        IndexChangedError: `base` was given and NAME was deleted or replaced since.
        IndexLockedError: another writer held the lock for longer than `lock_timeout` (the message names its pid).
    """
    index_path = Path(index_path)
    current = _lock_current(index_path, base, lock_timeout)
    txn = None
    try:
        txn = Transaction(index_path, current, None if staging is None else Path(staging))
        yield txn
    finally:
        if txn is not None:
            txn._finish()
        elif current is not None:
            current.close()


def _lock_current(index_path: Path, base: Optional[Pin], timeout: Optional[float]) -> Optional[Pin]:
    """Pin and lock whatever NAME is now (again if it changed while we waited for the lock); check it is `base`."""
    while True:
        current = pin_or_none(index_path)
        if current is None:
            if recover(index_path):
                continue
            if base is not None:
                raise IndexChangedError(f"The index at {index_path} was deleted after it was opened; nothing was "
                                        "written. Rebuild it, or open the new one and apply the changes again.")
            return None
        try:
            current.lock(timeout=timeout)
        except IndexLockedError:
            current.close()
            raise
        if not current.is_current():
            current.close()
            continue
        if base is not None and current.identity != base.identity:
            current.close()
            raise IndexChangedError(f"The index at {index_path} was changed by another writer (or rebuilt) after "
                                    "it was opened; nothing was written. Open a new Searcher and apply the changes "
                                    "again.")
        collect_garbage(index_path)
        return current


def _swap(new_dir: Path, index_path: Path) -> Path:
    """Put new_dir at index_path; return where the old version now is."""
    try:
        exchange(new_dir, index_path)
        return new_dir
    except NotImplementedError as e:
        logger.debug("No atomic exchange (%s); committing with two renames", e)
    old = hidden_sibling(index_path, "old")
    os.rename(index_path, old)
    try:
        os.rename(new_dir, index_path)
    except OSError:
        os.rename(old, index_path)
        raise
    return old


def _discard(old: Path, index_path: Path) -> None:
    """Delete a replaced version: first renamed to a trash name, so a half-deleted folder never keeps a name that
    looks like an index or a build to resume."""
    if old.is_symlink():
        old.unlink()
        return
    trash = hidden_sibling(index_path, "trash")
    os.rename(old, trash)
    shutil.rmtree(trash, ignore_errors=True)


def collect_garbage(index_path: Path) -> list[str]:
    """Delete what killed writers left beside the index (staging and trash folders no live writer holds)."""
    removed = []
    for leftover in _leftovers(index_path, "update|trash|old"):
        pin = pin_or_none(leftover)
        if pin is None or not pin.lock(wait=False):
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        pin.close()
        removed.append(leftover.name)
    if removed:
        logger.info("Removed %d leftovers of interrupted writes beside %s: %s", len(removed), index_path, removed)
    return removed


def recover(index_path: Path) -> bool:
    """When NAME is missing because a fallback commit (two renames) was killed between them, rename the old
    version back. Returns whether it did."""
    index_path = Path(index_path)
    if index_path.exists():
        return False
    for old in reversed(_leftovers(index_path, "old")):
        try:
            os.rename(old, index_path)
        except OSError:
            continue  # another writer recovered first, or this one is not whole: try the next
        logger.warning("Restored %s from %s, left by an interrupted commit", index_path, old.name)
        return True
    return False
