"""Portable index bundles: one file holding an index, its documents, its checkpoint (or the checkpoint's name) and a
manifest with a SHA-256 per file.

    export_bundle("indexes/scifact", "scifact.colbert")          # colbert bundle export indexes/scifact scifact.colbert
    index_dir = import_bundle("scifact.colbert", "imported/")    # colbert bundle import scifact.colbert imported/

A bundle is an uncompressed POSIX tar (`tar tf x.colbert` lists it) of regular files only:

    index/...            the index folder's files, unchanged (colbert-ai reads the imported folder)
    collection.tsv       the documents, when the index's collection (or `collection=`) is a file that exists here
    checkpoint/...       the checkpoint folder, with checkpoint="include" (default for a local folder)
    manifest.json        last: {"format": "colbert-bundle", "version": 1, "checkpoint": ..., "files": {path: {"sha256",
                         "size"}}}

Import extracts into a hidden sibling of DEST, checking every member's name (relative, no "..", no links or devices,
listed in the manifest), size and SHA-256, and that nothing listed is missing; only then is the folder renamed to
DEST. A tampered, truncated or foreign file raises BundleError and leaves nothing behind. In the imported index,
metadata.json's `checkpoint` names DEST/checkpoint when the checkpoint travelled with it, and `collection` names
DEST/collection.tsv; everything else is byte for byte what was exported.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

from colbert.errors import ColBERTError
from colbert.indexing import format as index_format
from colbert.indexing import versions

logger = logging.getLogger(__name__)

FORMAT, VERSION = "colbert-bundle", 1
MANIFEST = "manifest.json"
COPY_BLOCK = 1 << 20  # bytes hashed and copied at once
CHECKPOINT_MODES = ("include", "name")

PathLike = Union[str, os.PathLike]


class BundleError(ColBERTError, ValueError):
    """A bundle that cannot be imported: tampered, truncated, or not a bundle."""


def _files(folder: Path) -> list[Path]:
    """Regular files under `folder` (sorted), skipping hidden ones (temporaries, build leftovers)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _add(tar: tarfile.TarFile, name: str, source: io.BufferedIOBase, size: int, mtime: float) -> str:
    """Add one member from an open file, hashing it on the way; returns its SHA-256."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    digest = hashlib.sha256()

    class Hashing(io.RawIOBase):
        def read(self, n: int = -1) -> bytes:
            data = source.read(n)
            digest.update(data)
            return data

    tar.addfile(info, Hashing())
    return digest.hexdigest()


def _write(out: Path, index_dir: Path, collection: Optional[Path], checkpoint: Optional[Path],
           checkpoint_name: str) -> dict:
    """Write the whole bundle to `out`; return the manifest."""
    members: list[tuple[str, Path]] = [(f"index/{p.relative_to(index_dir).as_posix()}", p) for p in _files(index_dir)]
    if collection is not None:
        members.append(("collection.tsv", collection))
    if checkpoint is not None:
        members += [(f"checkpoint/{p.relative_to(checkpoint).as_posix()}", p) for p in _files(checkpoint)]
    now = time.time()
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "index_name": index_dir.name, "checkpoint": {"included": checkpoint is not None, "name": checkpoint_name},
        "collection": collection is not None, "files": {},
    }
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in members:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                manifest["files"][name] = {"sha256": _add(tar, name, f, size, now), "size": size}
        data = json.dumps(manifest, indent=1).encode()
        _add(tar, MANIFEST, io.BytesIO(data), len(data), now)
    return manifest


def export_bundle(index: PathLike, out: PathLike, checkpoint: Optional[str] = None,
                  collection: Optional[PathLike] = None, overwrite: bool = False) -> dict:
    """Write the index folder `index` (and its documents and checkpoint) to the bundle file `out`.

    Args:
        checkpoint: "include" (copy the checkpoint folder in; the default when the index's checkpoint is a folder
            that exists here) or "name" (record only its name, e.g. a hub name, to be found where it is imported).
        collection: the documents file (TSV); default the index's `collection` when it is a file that exists here.
        overwrite: replace `out` if it exists.

    Returns:
        The manifest written.
    """
    index_dir, out = Path(index), Path(out)
    if not index_format.is_complete(index_dir):
        raise FileNotFoundError(f"{index_dir} is not a complete index (no metadata.json); give an index folder")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another name or pass overwrite=True (--overwrite)")
    if checkpoint not in (None, *CHECKPOINT_MODES):
        raise ValueError(f"checkpoint must be one of {CHECKPOINT_MODES}, got {checkpoint!r}")
    config = index_format.read_metadata(index_dir)["config"]
    name = str(config.get("checkpoint") or "")
    local = Path(os.path.expanduser(name)) if name else None
    if checkpoint is None:
        checkpoint = "include" if local is not None and local.is_dir() else "name"
    if checkpoint == "include" and (local is None or not local.is_dir()):
        raise FileNotFoundError(f"The index's checkpoint {name!r} is not a folder here, so it cannot be included; "
                                "use checkpoint='name' (--checkpoint name) to record its name only")
    source = collection if collection is not None else config.get("collection")
    coll = Path(source) if isinstance(source, (str, os.PathLike)) and Path(source).is_file() else None
    if collection is not None and coll is None:
        raise FileNotFoundError(f"collection {collection} is not a file")
    if coll is None:
        logger.warning("No collection file for %s: the bundle holds the index without its documents", index_dir)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        manifest, pin = versions.read_consistent(
            index_dir, lambda d: _write(tmp, d, coll, local if checkpoint == "include" else None, name))
        if pin is not None:
            pin.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("Bundled %s (%d files) into %s", index_dir, len(manifest["files"]), out)
    return manifest


def _safe_name(name: str) -> PurePosixPath:
    """A member name as a relative path that stays inside the destination, or BundleError."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or any(p in ("..", "") for p in name.split("/")) \
            or path.parts[0] not in ("index", "checkpoint", "collection.tsv", MANIFEST):
        raise BundleError(f"the bundle holds a member named {name!r}, outside the folders a bundle may write; "
                          "refusing to import it (the file is not a colbert bundle, or it was tampered with)")
    return path


def _extract(tar: tarfile.TarFile, staging: Path) -> tuple[dict, dict]:
    """Every member into staging, hashed; returns (manifest, {name: (sha256, size)} of what was written)."""
    seen: dict[str, tuple[str, int]] = {}
    manifest = None
    for info in tar:
        rel = _safe_name(info.name)
        if not info.isfile():
            raise BundleError(f"bundle member {info.name!r} is not a regular file (a link or device); refusing it")
        if info.name in seen:
            raise BundleError(f"bundle member {info.name!r} appears twice; the bundle was tampered with")
        source = tar.extractfile(info)
        if info.name == MANIFEST:
            data = source.read()
            seen[info.name] = (hashlib.sha256(data).hexdigest(), len(data))
            try:
                manifest = json.loads(data)
            except ValueError as e:
                raise BundleError(f"the bundle's {MANIFEST} is not JSON ({e}); the bundle is damaged") from e
            continue
        target = staging.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with open(target, "wb") as f:
            while block := source.read(COPY_BLOCK):
                digest.update(block)
                size += len(block)
                f.write(block)
        seen[info.name] = (digest.hexdigest(), size)
    if manifest is None:
        raise BundleError(f"the bundle has no {MANIFEST}: it is truncated or not a colbert bundle")
    return manifest, seen


def _check(manifest: Any, seen: dict, bundle: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{bundle} is not a colbert bundle (its manifest has no format {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise BundleError(f"{bundle} is a version {manifest.get('version')!r} bundle; this colbert reads version "
                          f"{VERSION}. Upgrade colbert, or export the index again with this version.")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{bundle}'s manifest lists no files; the bundle is damaged")
    extra = sorted(set(seen) - set(files) - {MANIFEST})
    missing = sorted(set(files) - set(seen))
    if extra:
        raise BundleError(f"{bundle} holds files its manifest does not list ({', '.join(extra[:3])}); it was "
                          "tampered with")
    if missing:
        raise BundleError(f"{bundle} lacks {len(missing)} of the files its manifest lists (e.g. {missing[0]}); it is "
                          "truncated or damaged. Export it again.")
    bad = [name for name, entry in files.items()
           if not isinstance(entry, dict) or (entry.get("sha256"), entry.get("size")) != seen[name]]
    if bad:
        raise BundleError(f"{len(bad)} file(s) of {bundle} do not match their SHA-256 in the manifest (e.g. "
                          f"{bad[0]}); the bundle was modified or damaged. Export it again.")
    if not any(name.startswith("index/") and name.endswith(index_format.METADATA_FILE) for name in files):
        raise BundleError(f"{bundle} holds no index (no index/{index_format.METADATA_FILE})")


def import_bundle(bundle: PathLike, dest: PathLike) -> Path:
    """Unpack and verify a bundle into the new folder `dest`; return the index folder (`dest/index`).

    Raises:
        BundleError: the file is not a bundle, or is tampered with or truncated (nothing is left at `dest`).
        FileExistsError: `dest` exists.
    """
    bundle, dest = Path(bundle), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; import into a new folder")
    if not bundle.is_file():
        raise FileNotFoundError(f"no bundle at {bundle}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.import-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            with tarfile.open(bundle, "r:") as tar:
                manifest, seen = _extract(tar, staging)
        except (tarfile.TarError, EOFError) as e:
            raise BundleError(f"{bundle} cannot be read as a bundle ({e}); it is truncated or not a colbert "
                              "bundle") from e
        _check(manifest, seen, bundle)
        _relink(staging, dest, manifest)
        os.rename(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Imported %s into %s", bundle, dest)
    return dest / "index"


def _relink(staging: Path, dest: Path, manifest: dict) -> None:
    """Point the imported index's config at the checkpoint and documents that came with it."""
    index_dir = staging / "index"
    meta = index_format.read_metadata(index_dir)
    config = dict(meta["config"])
    if manifest["checkpoint"].get("included"):
        config["checkpoint"] = str((dest / "checkpoint").resolve())
    if manifest.get("collection"):
        config["collection"] = str((dest / "collection.tsv").resolve())
    if config != meta["config"]:
        index_format.write_metadata(index_dir, {**meta, "config": config})
