"""The training loop: one function that every rank runs, with exact resume.

A step takes `bsize / nranks` examples of the rank's shard, in `accumsteps` micro-batches; each is encoded
through DDP (gradients averaged over ranks), scored with MaxSim and backpropagated; then gradients are clipped
to norm 2.0, AdamW steps and the linear warmup/decay schedule moves on, as in the reference. AMP (fp16 autocast
with a gradient scaler) is used on CUDA when `config.amp` is set.

Resuming restores the model, the optimizer, the schedule, the gradient scaler and every rank's RNG, and starts at
the stored step; the data position follows from the step. On CPU, k steps + resume + (N - k) steps give the same
weights as N straight steps (tests/test_training.py checks it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from colbert.infra.config import ColBERTConfig
from colbert.modeling.colbert import ColBERT
from colbert.training import distributed
from colbert.training.batcher import Batch, TrainingData, tensorize
from colbert.training.losses import LossParts, colbert_loss
from colbert.training.state import (LOG_FILE, STATE_FILE, read_state, rng_state, save_checkpoint, set_rng_state,
                                   step_dir)
from colbert.utils.progress import is_main_process, progress

logger = logging.getLogger(__name__)

SEED = 12345  # the reference's seed
MAX_GRAD_NORM = 2.0  # the reference's clipping norm
ADAM_EPS = 1e-8
LOG_EVERY = 20  # steps between log lines and train_log.jsonl records
TRAINING_FIELDS = ("bsize", "accumsteps", "lr", "maxsteps", "save_every", "warmup", "warmup_bert", "nway",
                   "use_ib_negatives", "distillation_alpha", "ignore_scores")


@dataclass
class TrainingJob:
    """Everything a rank needs, resolved once by the Trainer facade (picklable, for spawned ranks)."""

    config: ColBERTConfig
    triples: Any
    queries: Any
    collection: Any
    checkpoint: str  # the model training started from
    run_dir: str
    settings: dict  # what a resumed run must match (state.resume_settings)
    device: str = "cpu"
    resume_from: Optional[str] = None  # a checkpoint folder holding training_state.pt
    log_every: int = LOG_EVERY


@dataclass
class TrainingOutcome:
    checkpoint_path: str
    model: ColBERT  # this rank's final model
    steps: int  # steps done in total, resumed ones included
    shard: range  # positions in the triples this rank reads (step s: shard[s * b:(s + 1) * b])
    rank_bsize: int


class _Encoder(nn.Module):
    """What DDP wraps: queries and documents in, embeddings out (the loss is computed outside)."""

    def __init__(self, colbert: ColBERT) -> None:
        super().__init__()
        self.colbert = colbert

    def forward(self, q_ids: Tensor, q_mask: Tensor, d_ids: Tensor, d_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        Q = self.colbert.query(q_ids, q_mask)  # (B, Lq, d)
        D, keep = self.colbert.doc(d_ids, d_mask, keep_dims="return_mask")  # (B * nway, Ld, d), (B * nway, Ld)
        return Q, D, keep


def linear_schedule(step: int, warmup: Optional[int], total: int) -> float:
    """LR factor: linear warmup from 0 over `warmup` steps, then linear decay to 0 at `total`; 1 without warmup.

    Example:
        >>> [linear_schedule(s, 2, 6) for s in range(7)]
        [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if warmup is None:
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def train_worker(rank: int, nranks: int, job: TrainingJob) -> str:
    """Entry point of each rank (see colbert.infra.launcher.launch); returns the final checkpoint folder."""
    return run_training(rank, nranks, job).checkpoint_path


def training_config(config: ColBERTConfig) -> ColBERTConfig:
    """The run's config with its training fields marked assigned, so they win over a checkpoint's stored ones."""
    explicit = ColBERTConfig(**{name: getattr(config, name) for name in TRAINING_FIELDS})
    return ColBERTConfig.from_existing(config, explicit)


def _load_model(job: TrainingJob, device: torch.device) -> ColBERT:
    name = job.resume_from or job.checkpoint
    model = ColBERT(name, training_config(job.config))
    if not model.has_head:
        logger.info("%s has no ColBERT head: training a fresh %d -> %d linear layer", name,
                    model.bert.config.hidden_size, model.colbert_config.dim)
    return model.to(device).train()


def _set_encoder_trainable(model: ColBERT, trainable: bool) -> None:
    """Freeze or unfreeze the transformer (warmup_bert: only the head trains during the first steps)."""
    for p in model.bert.parameters():
        p.requires_grad_(trainable)


class Optimisation:
    """AdamW, the linear warmup/decay schedule and the AMP gradient scaler: one step, and their state for resume."""

    def __init__(self, model: nn.Module, config: ColBERTConfig, device: torch.device) -> None:
        self.params = list(model.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, eps=ADAM_EPS)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(linear_schedule, warmup=config.warmup, total=config.maxsteps))
        self.use_amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.float16) if self.use_amp else contextlib.nullcontext()

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> float:
        """Clip (after unscaling), step the optimizer and the schedule, clear gradients; return the grad norm."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def _restore(job: TrainingJob, rank: int, device: torch.device, optimisation: Optimisation) -> int:
    """Load the optimisation state and this rank's RNG from the checkpoint being resumed; return its step."""
    if not job.resume_from:
        return 0
    state = read_state(Path(job.resume_from) / STATE_FILE, mmap=False)
    optimisation.load_state_dict(state)
    set_rng_state(state["rng"][rank], device)
    logger.info("Resuming from %s at step %d", job.resume_from, state["step"])
    return int(state["step"])


def run_training(rank: int, nranks: int, job: TrainingJob) -> TrainingOutcome:
    """Train on this rank's shard until maxsteps or until the shortest shard runs out; save and return.

    Args:
        rank: this process's rank, 0 <= rank < nranks.
        nranks: number of processes (a torch.distributed group exists when > 1).
        job: the resolved job.
    """
    config = job.config
    rank_bsize = config.bsize // nranks
    device = distributed.rank_device(torch.device(job.device), rank)
    data = TrainingData(job.triples, job.queries, job.collection, config.nway)
    total = _total_steps(data, nranks, rank_bsize, config.maxsteps)
    torch.manual_seed(SEED)  # the same fresh head on every rank
    model = _load_model(job, device)
    encoder = distributed.wrap(_Encoder(model), device, find_unused_parameters=config.warmup_bert is not None)
    optimisation = Optimisation(model, config, device)
    torch.manual_seed(SEED + rank)  # dropout differs between ranks
    start = _restore(job, rank, device, optimisation)
    teacher = data.has_scores and not config.ignore_scores
    shard = data.shard(rank, nranks)
    log = TrainingLog(Path(job.run_dir), job.log_every, config.bsize, device)
    log.event("start", step=start, total=total, nranks=nranks, resumed_from=job.resume_from,
              examples=len(data), checkpoint=job.checkpoint)

    def save(path: Path, step: int) -> None:
        rngs = distributed.all_gather_object(rng_state(device))  # every rank takes part
        state = {"step": step, "settings": job.settings, "rng": rngs, **optimisation.state_dict()}
        save_checkpoint(model, path, state if rank == 0 else None)
        log.event("checkpoint", step=step, path=str(path))
        distributed.barrier()

    for step in progress(range(start, total), desc="Training", total=max(0, total - start), unit="step"):
        _set_encoder_trainable(model, config.warmup_bert is None or step >= config.warmup_bert)
        indices = shard[step * rank_bsize:(step + 1) * rank_bsize]
        batches = tensorize(data, indices, model.query_tokenizer, model.doc_tokenizer, config.accumsteps)
        lr, parts = optimisation.lr, []
        for i, batch in enumerate(batches):
            with distributed.no_sync(encoder, skip=i < len(batches) - 1):  # all-reduce after the last only
                with optimisation.autocast():
                    Q, D, keep = encoder(batch.q_ids, batch.q_mask, batch.d_ids, batch.d_mask)
                part = _loss(Q, D, keep, batch, config, model.colbert_config, teacher, device)
                optimisation.backward(part.loss / config.accumsteps)
            parts.append(replace(part, loss=part.loss.detach()))
        grad_norm = optimisation.step()
        log.step(step + 1, total, parts, lr, grad_norm)
        if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < total:
            save(step_dir(job.run_dir, step + 1), step + 1)

    final = step_dir(job.run_dir)
    save(final, max(start, total))
    log.event("end", step=max(start, total))
    return TrainingOutcome(str(final), model, max(start, total), shard, rank_bsize)


def _loss(Q: Tensor, D: Tensor, keep: Tensor, batch: Batch, config: ColBERTConfig, model_config: ColBERTConfig,
          teacher: bool, device: torch.device) -> LossParts:
    """The loss of one micro-batch, in fp32 whatever the encoder's autocast dtype."""
    scores = batch.scores.to(device) if teacher and batch.scores is not None else None
    return colbert_loss(Q.float(), D.float(), keep, config.nway, scores, config.use_ib_negatives,
                        config.distillation_alpha, model_config)


def _total_steps(data: TrainingData, nranks: int, rank_bsize: int, maxsteps: int) -> int:
    available = data.steps(nranks, rank_bsize)
    if available == 0:
        raise ValueError(f"{data.where} holds {len(data):,} examples, fewer than one batch of bsize="
                         f"{rank_bsize * nranks}; lower bsize or give more triples")
    if available < maxsteps:
        logger.info("The triples run out after %d steps (maxsteps=%d): training stops there, as the reference "
                    "does. Write more (or repeated) triples to train longer.", available, maxsteps)
    return min(available, maxsteps)


class TrainingLog:
    """Loss, learning rate and throughput: a log line and a train_log.jsonl record every `every` steps.

    Every rank calls `step` (the numbers are averaged over ranks); only rank 0 logs and writes.
    """

    def __init__(self, run_dir: Path, every: int, bsize: int, device: torch.device) -> None:
        self.main = is_main_process()
        self.path = run_dir / LOG_FILE
        self.every, self.bsize, self.device = max(1, every), bsize, device
        self.sums = [0.0] * 6
        self.count = 0
        self.first = True  # the first step after a (re)start is always logged
        self.since = time.perf_counter()
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)

    def step(self, step: int, total: int, parts: list[LossParts], lr: float, grad_norm: float) -> None:
        n = len(parts)
        values = [sum(p.loss.item() for p in parts) / n, sum(p.nway_loss for p in parts) / n,
                  sum(p.ib_loss for p in parts) / n, sum(p.positive_score for p in parts) / n,
                  sum(p.negative_score for p in parts) / n, grad_norm]
        self.sums = [s + v for s, v in zip(self.sums, values)]
        self.count += 1
        if step % self.every and step != total and not self.first:
            return
        self.first = False
        means = distributed.mean_over_ranks([s / self.count for s in self.sums], self.device)
        elapsed = time.perf_counter() - self.since
        record = dict(zip(("loss", "nway_loss", "ib_loss", "positive_score", "negative_score", "grad_norm"), means))
        record.update(lr=lr, examples_per_s=self.count * self.bsize / max(elapsed, 1e-9))
        self.sums, self.count, self.since = [0.0] * 6, 0, time.perf_counter()
        if self.main:
            logger.info("step %d/%d  loss %.4f  lr %.3g  |grad| %.3f  scores +%.2f -%.2f  %.1f examples/s", step,
                        total, record["loss"], lr, record["grad_norm"], record["positive_score"],
                        record["negative_score"], record["examples_per_s"])
        self.event("step", step=step, **record)

    def event(self, kind: str, **fields: Any) -> None:
        if self.main:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"event": kind, "time": time.time(), **fields}) + "\n")
