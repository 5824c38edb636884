"""Indexer: resolve the config once, choose the index path and overwrite policy, call build_index.

An index is built in a hidden sibling folder (`.NAME.building`) and moved into place when complete by one atomic
rename (see colbert.index.versions), so an interrupted build or a failed overwrite never leaves a half-written
index under NAME, and the old index keeps serving until the new one is whole. `overwrite='resume'` continues an
interrupted build from its last complete chunk; on a complete index (and no interrupted rebuild beside it) it saves
the index again from its chunks, as colbert-ai's resumed build does (Indexer._resave).

Where the index goes is decided as colbert-ai decides it: `index_path` if set, else `index_root/name` (the name may
be a relative or absolute path), with index_root, root and experiment taken from Run() (colbert.infra.run.Run.where).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from colbert.data import Collection
from colbert.errors import IndexExistsError
from colbert.index import format as index_format
from colbert.index import versions
from colbert.index.codec import check_nbits
from colbert.indexing.documents import MetadataLike, align_metadata
from colbert.modeling.pooling import check_pooling
from colbert.infra.config import ColBERTConfig, check_config
from colbert.modeling.hf_format import load_checkpoint_config
from colbert.infra.run import Run
from colbert.utils.checks import check_path, check_verbose

logger = logging.getLogger(__name__)

OVERWRITE_VALUES = (True, False, "reuse", "resume", "force_silent_overwrite")
CollectionLike = Union[str, os.PathLike, Sequence[str], Mapping[Any, str], Collection]


def staging_path(index_path: Path) -> Path:
    """Where an index is built before it is moved into place (also what 'resume' continues)."""
    return index_path.with_name(f".{index_path.name}.building")


def check_index_name(name: str) -> str:
    """The index name is joined to index_root as the reference does: a plain name, a relative path (sub/name) or an
    absolute path (the index folder itself). No part may be '.' or '..', and the last may not start with '.'
    (builds and updates are written to hidden siblings `.NAME.*`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"Index name {name!r} must be a non-empty str; the name '' is index_root itself")
    parts = name.replace("\\", "/").split("/")
    inner = parts[1:] if name.startswith("/") else parts
    if any(p in ("", ".", "..") for p in inner) or inner[-1].startswith("."):
        raise ValueError(f"Index name {name!r} must be a folder name, a relative path or an absolute path whose "
                         "parts are not '.' or '..' and whose last part does not start with '.'; to put an index "
                         "elsewhere, set RunConfig(index_root=...) or ColBERTConfig(index_path=...)")
    return name


class Indexer:
    """Build PLAID indexes with a ColBERT checkpoint (the reference's Indexer).

    Args:
        checkpoint: checkpoint folder or hub name.
        config: settings such as nbits, doc_maxlen, index_bsize, kmeans_niters; they override the checkpoint's.
        verbose: 0 silent, 1 progress bars, 2 config summary, 3 debug.
    """

    def __init__(self, checkpoint: Union[str, os.PathLike], config: Optional[ColBERTConfig] = None,
                 verbose: int = 3, *, lock_timeout: Optional[float] = versions.LOCK_TIMEOUT_S) -> None:
        self.index_path: Optional[str] = None
        self.verbose = check_verbose(verbose)
        self.checkpoint = check_path(checkpoint, "checkpoint")
        check_config(config)
        self.lock_timeout = lock_timeout
        self.checkpoint_config = load_checkpoint_config(self.checkpoint)  # CheckpointError if missing
        self.config = Run().resolve(self.checkpoint_config, config=config, checkpoint=self.checkpoint)
        self.stats: Any = None

    def configure(self, **kwargs: Any) -> None:
        """Set config fields for the next `index` calls (checked before anything is set)."""
        self.config.configure(**kwargs)

    def get_index(self) -> Optional[str]:
        return self.index_path

    def index(self, name: str, collection: CollectionLike, overwrite: Union[bool, str] = False, *,
              metadata: MetadataLike = None, store_documents: Optional[bool] = None) -> str:
        """Index `collection` (a TSV path, a list of texts, a dict {id: text} or a Collection) as `name`.

        Args:
            overwrite: False raises if the index exists; True rebuilds it (the old one serves until the new one is
                complete); 'reuse' keeps an existing complete index; 'resume' continues an interrupted build,
                and on a complete index saves it again from its chunks with the current settings and the
                collection's ids (nothing is encoded; the collection must have as many passages), as colbert-ai does.
            metadata: a JSON object per passage (a list aligned with the collection, or a dict {id: dict}), stored
                with the texts in documents.jsonl (colbert.indexing.documents) for retrievers and metadata filters.
            store_documents: keep the texts (and metadata) in the index; default: when metadata is given.

        Returns:
            The index folder.
        """
        if overwrite not in OVERWRITE_VALUES or (overwrite is not True and overwrite is not False
                                                 and not isinstance(overwrite, str)):
            raise ValueError(f"overwrite must be one of {OVERWRITE_VALUES}, got {overwrite!r}")
        if name != "":
            check_index_name(name)
        if self.config.similarity != "cosine":
            raise ValueError(f"similarity={self.config.similarity!r} is not supported by indexing or search; use "
                             "'cosine'")
        collection = Collection.cast(collection)
        stored_metadata = None
        if store_documents or (store_documents is None and metadata is not None):
            stored_metadata = align_metadata(metadata, [collection.id_of(p) for p in range(len(collection))])
        elif metadata is not None:
            raise ValueError("metadata was given with store_documents=False; metadata is only kept with the texts")
        described = collection.path or f"<{len(collection):,} passages given in memory>"
        # bsize=64: what colbert-ai's Indexer.index records in plan.json and metadata.json (indexing reads index_bsize)
        config = self.config.replace(collection=described, index_name=name, resume=overwrite == "resume", bsize=64)
        index_path = Path(config.index_path_ or config.index_root_)  # name "": index_root itself
        if overwrite is not False:
            _check_replaceable(index_path)
        self.index_path = str(index_path)
        if index_format.is_complete(index_path) and overwrite == "reuse":
            logger.info("Index %s exists and is complete; reusing it", index_path)
            return self.index_path
        if index_format.is_complete(index_path) and overwrite == "resume" and not staging_path(index_path).exists():
            self._resave(index_path, collection, config, stored_metadata)
            return self.index_path
        if index_path.exists() and any(index_path.iterdir()) and overwrite is False:
            raise IndexExistsError(f"An index already exists at {index_path}. Pass overwrite=True to rebuild it, "
                                   "overwrite='reuse' to keep it, or choose another name.")
        self._build(index_path, collection, config, resume=overwrite == "resume", metadata=stored_metadata)
        return self.index_path

    def _build(self, index_path: Path, collection: Collection, config: ColBERTConfig, resume: bool,
               metadata: Optional[list[dict]] = None) -> None:
        """Build in the staging folder and publish. An exception removes the staging folder (nothing is left
        behind); an interruption (KeyboardInterrupt, a killed process) keeps it for overwrite='resume'."""
        from colbert.indexing import load_or_make_plan
        from colbert.infra.launcher import launch

        check_nbits(config.nbits)
        check_pooling(config.pool_factor, config.protected_tokens, config.clustering_mode)
        staging = staging_path(index_path)
        if staging.exists() and not resume:
            shutil.rmtree(staging)
        staging.mkdir(parents=True, exist_ok=True)
        from colbert.indexing.collection_indexer import kmeans_override

        try:
            plan = load_or_make_plan(staging, collection, config, config.nranks, resume)
            backend = "nccl" if config.gpus != 0 and _cuda_count() >= config.nranks else "gloo"
            self.stats = launch(_index_rank, str(staging), collection, config, plan, resume, self.verbose,
                                metadata, kmeans_override(config), nranks=config.nranks, backend=backend)
            publish(staging, index_path, self.lock_timeout)
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("Index written to %s", index_path)

    def _resave(self, index_path: Path, collection: Collection, config: ColBERTConfig,
                metadata: Optional[list[dict]]) -> None:
        """overwrite='resume' on a complete index, as the reference: finalize it again (colbert.indexing.resave_index)
        in a hard-linked copy, swapped in by one atomic commit (the index serves unchanged until then)."""
        from colbert.indexing import resave_index

        with versions.transaction(index_path, lock_timeout=self.lock_timeout) as txn:
            for f in sorted(index_path.iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    versions.link_or_copy(f, txn.dir / f.name)
            self.stats = resave_index(txn.dir, collection, config, metadata, show_progress=self.verbose > 0)
            txn.commit()
        logger.info("Index %s saved again from its chunks (overwrite='resume' on a complete index)", index_path)


def _check_replaceable(index_path: Path) -> None:
    """A build replaces the whole folder it writes (the name "" is index_root itself, which llama-index's
    ColbertIndex relies on; a name may also be any path): refuse a folder that holds other folders (an index has
    none), e.g. other indexes, or files when none of them is an index's metadata."""
    if not index_path.is_dir():
        return
    entries = [p for p in index_path.iterdir() if not p.name.startswith(".")]
    others = [p.name for p in entries if p.is_dir()]
    not_an_index = entries and not any((index_path / f).is_file() for f in ("metadata.json", "plan.json"))
    if others or not_an_index:
        raise ValueError(f"{index_path} holds {'folders' if others else 'files'} that are not an index "
                         f"({', '.join((others or [p.name for p in entries])[:5])}), and a build replaces the whole "
                         "folder; give the index its own folder (another name, index_root or index_path)")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def _index_rank(rank: int, nranks: int, staging: str, collection: Collection, config: ColBERTConfig, plan: Any,
                resume: bool, verbose: int, metadata: Optional[list[dict]] = None, kmeans: Any = None) -> Any:
    """One rank's share of a build: load the checkpoint on this rank's device, then build_index."""
    import torch

    from colbert.indexing import build_index
    from colbert.modeling.checkpoint import Checkpoint

    device = None
    if config.gpus != 0 and torch.cuda.is_available():
        device = torch.device("cuda", rank % torch.cuda.device_count())
    checkpoint = Checkpoint(config.checkpoint, colbert_config=config, verbose=verbose, device=device)
    return build_index(Path(staging), collection, checkpoint, checkpoint.colbert_config, plan, rank=rank,
                       nranks=nranks, resume=resume, show_progress=verbose > 0, metadata=metadata, kmeans=kmeans)


def publish(staging: Path, index_path: Path, lock_timeout: Optional[float] = versions.LOCK_TIMEOUT_S) -> None:
    """Move a complete build into place with one atomic commit (colbert.index.versions): an old index at
    `index_path` is swapped out by a single rename and deleted after, so at every moment `index_path` holds the
    whole old index or the whole new one, never nothing, and readers never mix the two."""
    if not index_format.is_complete(staging):
        raise RuntimeError(f"The build in {staging} is incomplete; run again with overwrite='resume'")
    with versions.transaction(index_path, staging=staging, lock_timeout=lock_timeout) as txn:
        txn.commit()
