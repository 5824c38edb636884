"""read_folder(): a folder of .txt / .md files as a Collection, one passage per file, id = its relative path."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from colbert.data.collection import STRIP, Collection

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")


def read_folder(path: str | os.PathLike, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> Collection:
    """Every file under `path` (recursively) whose name ends with one of `suffixes`, as one passage each.

    Ids are the paths relative to `path` with '/' separators ("notes/a.md"), in sorted order, so the same folder
    always gives the same collection. Hidden files and folders (a name starting with '.') are skipped, and so are
    files that are empty after stripping whitespace (logged). Texts are read as UTF-8 and kept whole: passages
    longer than doc_maxlen tokens are truncated when encoded, so split long documents into files of a few
    paragraphs.

    Raises:
        NotADirectoryError: `path` is not a folder.
        ValueError: no non-empty file matches, or a file is not UTF-8 (the message names it).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "b.md").write_text("# Second"), (root / "sub").mkdir(), (root / "sub" / "a.txt").write_text("first")
        >>> c = read_folder(root)
        >>> c.ids, c.data
        (['b.md', 'sub/a.txt'], ['# Second', 'first'])
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    wanted = tuple(s.lower() for s in suffixes)
    passages, skipped = {}, []
    for file in sorted(_files(root), key=lambda f: f.relative_to(root).as_posix()):
        if not file.name.lower().endswith(wanted):
            continue
        doc_id = file.relative_to(root).as_posix()
        try:
            text = file.read_text(encoding="utf-8").strip(STRIP)
        except UnicodeDecodeError as e:
            raise ValueError(f"{file} is not UTF-8 text ({e.reason} at byte {e.start}); convert it or move it out of "
                             f"{root}") from None
        if text:
            passages[doc_id] = text
        else:
            skipped.append(doc_id)
    if skipped:
        logger.info("Skipped %d empty file(s) in %s: %s", len(skipped), root, ", ".join(skipped[:5]))
    if not passages:
        raise ValueError(f"{root} holds no non-empty {' or '.join(suffixes)} file; nothing to index")
    collection = Collection(data=passages)
    collection.path = str(root)
    return collection


def _files(root: Path) -> list[Path]:
    found = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(folder) / name for name in filenames if not name.startswith(".")]
    return found
