"""Trainer: resolve the config once, check it, launch training.train on every rank, return the checkpoint path.

Example (the reference's API):

    from colbert import Trainer, Run, RunConfig, ColBERTConfig
    with Run().context(RunConfig(nranks=4, experiment="msmarco")):
        config = ColBERTConfig(bsize=32, lr=1e-05, warmup=20_000, doc_maxlen=180, dim=128, nway=2,
                               accumsteps=1, use_ib_negatives=True)
        trainer = Trainer(triples="triples.jsonl", queries="queries.tsv", collection="collection.tsv",
                          config=config)
        checkpoint_path = trainer.train(checkpoint="bert-base-uncased")

Differences from the reference, on purpose: each rank trains on its own shard of the triples (the reference gave
every rank the same ones); `bsize` not divisible by nranks, or per-rank batches not divisible by `accumsteps`,
raise ValueError instead of failing an assert; `train(resume=True)` continues an interrupted run exactly;
`train()` returns the final checkpoint folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from colbert.infra.config import ColBERTConfig, check_config
from colbert.infra.device import resolve_device
from colbert.infra.launcher import launch, torchrun_rank
from colbert.infra.run import Run
from colbert.training.batcher import describe_source
from colbert.training.distributed import backend_for
from colbert.training.state import STATE_FILE, check_resumable, latest_state, read_state, resume_settings
from colbert.training.train import TrainingJob, train_worker

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "bert-base-uncased"  # the reference's default starting point


class Trainer:
    """Train a ColBERT model on triples.

    Args:
        triples: JSONL of `[qid, pid+, pid-, ...]` or `[qid, [pid, score], ...]` lines (or a list, or
            `colbert.data.Examples`).
        queries: TSV `qid<TAB>text` (or a dict, or `colbert.data.Queries`).
        collection: TSV `pid<TAB>text` (or a list or dict, or `colbert.data.Collection`).
        config: training settings; `Run().context(RunConfig(...))` overrides them, as in the reference.
    """

    def __init__(self, triples: Any, queries: Any, collection: Any, config: Optional[ColBERTConfig] = None) -> None:
        check_config(config)
        self.config = ColBERTConfig.from_existing(config, Run().config, Run().where(config))
        self._named = "name" in Run().config.assigned  # a run to resume is named in the Run context
        self.triples, self.queries, self.collection = triples, queries, collection
        self._best_checkpoint_path: Optional[str] = None

    def configure(self, **kwargs: Any) -> None:
        self.config.configure(**kwargs)

    def train(self, checkpoint: Optional[str] = None, resume: Optional[bool] = None) -> str:
        """Train, save, and return the final checkpoint folder (run_dir/checkpoints/colbert, where run_dir is
        root/experiment/none/name as in colbert-ai; `training_run_dir`).

        Args:
            checkpoint: where training starts: a ColBERT checkpoint, or a backbone such as 'bert-base-uncased'
                (then a fresh linear head is trained). Default: the interrupted run's when resuming, else
                'bert-base-uncased'. `config.checkpoint` is ignored, as in the reference.
            resume: continue from the latest checkpoint of this run (its folder, run_dir, so pass the
                interrupted run's `RunConfig(name=...)`); default `config.resume`. With no checkpoint there yet, a
                new run starts. Settings other than maxsteps and save_every must be those of the run.

        Raises:
            ValueError: bad settings, triples naming unknown ids, or a resume with other settings; raised before
                the first step.
        """
        resume = self.config.resume if resume is None else resume
        nranks = _nranks(self.config)
        config = self.config.replace(nranks=nranks)  # settings resolved for this call only
        device = resolve_device(config)
        check_settings(config, nranks, device.type)
        run_dir = training_run_dir(config)
        resume_from = _resume_point(run_dir, config, self._named) if resume else None
        sources = {"triples": describe_source(self.triples), "queries": describe_source(self.queries),
                   "collection": describe_source(self.collection)}
        start = None if checkpoint is None else str(checkpoint)
        if resume_from is not None:
            saved = read_state(resume_from / STATE_FILE)["settings"]
            start = start or saved["checkpoint"]
            check_resumable(saved, resume_settings(config, start, sources), resume_from)
        start = start or DEFAULT_CHECKPOINT
        config.configure(checkpoint=start, **{k: v for k, v in sources.items() if v is not None})
        logger.debug("Training config:\n%s", config)
        job = TrainingJob(config, self.triples, self.queries, self.collection, start, run_dir,
                          resume_settings(config, start, sources), device.type,
                          None if resume_from is None else str(resume_from))
        self._best_checkpoint_path = launch(train_worker, job, nranks=nranks, backend=backend_for(device))
        return self._best_checkpoint_path

    def best_checkpoint_path(self) -> Optional[str]:
        """The folder of the last checkpoint `train()` saved (the reference's name: it is not chosen by dev score)."""
        return self._best_checkpoint_path


def _nranks(config: ColBERTConfig) -> int:
    """nranks from the config, or torchrun's WORLD_SIZE when started by torchrun (they must agree if both set)."""
    placed = torchrun_rank()
    if placed is None:
        return config.nranks
    if "nranks" in config.assigned and config.nranks != placed.world_size:
        raise ValueError(f"nranks={config.nranks} but torchrun started {placed.world_size} processes; drop nranks "
                         "or make them agree")
    return placed.world_size


def check_settings(config: ColBERTConfig, nranks: int, device_type: str) -> None:
    """Raise ValueError on training settings that cannot work, before any process starts."""
    for name in ("bsize", "accumsteps", "maxsteps", "nway", "nranks"):
        value = nranks if name == "nranks" else getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if config.bsize % nranks:
        raise ValueError(f"bsize={config.bsize} is the batch over all {nranks} ranks and must be divisible by "
                         f"nranks; use bsize={config.bsize - config.bsize % nranks or nranks}")
    if (config.bsize // nranks) % config.accumsteps:
        raise ValueError(f"each rank's batch (bsize / nranks = {config.bsize // nranks}) must be divisible by "
                         f"accumsteps={config.accumsteps}")
    if config.similarity != "cosine":
        raise ValueError(f"similarity={config.similarity!r} is not supported for training; use 'cosine'")
    if config.save_every is not None and (isinstance(config.save_every, bool) or config.save_every < 1):
        raise ValueError(f"save_every must be a positive int or None, got {config.save_every!r}")
    if device_type == "cuda":
        import torch

        if nranks > torch.cuda.device_count():
            raise ValueError(f"nranks={nranks} but only {torch.cuda.device_count()} GPUs are visible; training runs "
                             "one process per GPU")


def training_run_dir(config: ColBERTConfig) -> str:
    """Where a training run writes: root/experiment/none/name, colbert-ai's `Run().path_` in its spawned training
    worker (whose script-name level is 'none': the worker's __main__ has no file), so checkpoints land where
    colbert-ai puts them."""
    return os.path.join(config.root, config.experiment, "none", config.name)


def _resume_point(run_dir: str, config: ColBERTConfig, named: bool) -> Optional[Path]:
    if not named:
        raise ValueError(
            f"resume=True needs the name of the run to resume: pass Run().context(RunConfig(name=...)) as given to "
            f"the interrupted run; without it the run is called {config.name!r}, this process's timestamp"
        )
    found = latest_state(run_dir)
    if found is None:
        logger.warning("resume=True but %s holds no training state yet: starting a new run", run_dir)
    return found
