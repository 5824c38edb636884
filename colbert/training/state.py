"""Checkpoints of a training run and the state that makes resuming exact.

Layout of a run directory (`root/experiment/none/name`, colbert-ai's training folder; trainer.training_run_dir):

    checkpoints/colbert-<step>/     every `save_every` steps: the model in the reference's checkpoint layout
        training_state.pt           optimizer, LR schedule, grad scaler, every rank's RNG state, step
    checkpoints/colbert/            the final model (the reference's name), with its training_state.pt
    train_log.jsonl                 loss, learning rate and throughput, one JSON object per logged step

The model is written first and training_state.pt last (atomically), so a folder with training_state.pt is a
complete checkpoint and the latest such folder is where a resumed run starts. The data position is not stored
separately: it is `step * bsize / nranks` in every rank's shard (see batcher.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch

from colbert.infra.config import ColBERTConfig
from colbert.utils.io import atomic_torch_save

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
FINAL_NAME = "colbert"
STATE_FILE = "training_state.pt"
LOG_FILE = "train_log.jsonl"
STATE_VERSION = 1

# Settings that change what a step computes: resuming with other values would not continue the same run.
# maxsteps may change (to extend a run; the linear decay then follows the new maxsteps), and so may save_every.
RESUME_FIELDS = (
    "bsize", "accumsteps", "lr", "warmup", "warmup_bert", "nway", "use_ib_negatives", "distillation_alpha",
    "ignore_scores", "similarity", "interaction", "query_maxlen", "doc_maxlen", "dim", "attend_to_mask_tokens",
    "mask_punctuation", "query_token_id", "doc_token_id", "nranks", "amp",
)


def step_dir(run_dir: str | os.PathLike, step: Optional[int] = None) -> Path:
    """checkpoints/colbert-<step>, or checkpoints/colbert for the final model (step None)."""
    name = FINAL_NAME if step is None else f"{FINAL_NAME}-{step}"
    return Path(run_dir) / CHECKPOINTS_DIR / name


def resume_settings(config: ColBERTConfig, checkpoint: str, sources: dict[str, Optional[str]]) -> dict[str, Any]:
    """What must stay the same between a run and its resumption: RESUME_FIELDS, start checkpoint, data files."""
    settings = {name: getattr(config, name) for name in RESUME_FIELDS}
    settings["checkpoint"] = checkpoint
    settings.update(sources)
    return settings


def check_resumable(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    """Raise ValueError listing every setting that differs from the run being resumed."""
    differ = [f"{k}: {saved.get(k)!r} then, {now[k]!r} now" for k in now if saved.get(k) != now[k]]
    if differ:
        raise ValueError(
            f"Cannot resume from {path}: the run was trained with other settings ({'; '.join(differ)}). Resume with "
            "the same settings (only maxsteps and save_every may change), or start a new run under another "
            "RunConfig(name=...)."
        )


def read_state(path: Path, mmap: bool = True) -> dict[str, Any]:
    """Load a training_state.pt onto the CPU, naming the file when it is not one.

    With mmap, tensors are read only when touched: cheap when only the step and settings are wanted.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types for a damaged file
        raise ValueError(f"{path} is not a readable training state ({e}); delete its folder to resume from an "
                         "earlier checkpoint") from e
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"{path} is not a training state of this version of colbert (expected version "
                         f"{STATE_VERSION}); start a new run")
    return state


def latest_state(run_dir: str | os.PathLike) -> Optional[Path]:
    """The checkpoint folder holding the training state with the highest step, or None."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    found = [(int(read_state(f)["step"]), f.parent.name == FINAL_NAME, f.parent)
             for f in sorted(root.glob(f"{FINAL_NAME}*/{STATE_FILE}"))]
    return max(found)[2] if found else None


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch RNG state (CPU, and the current GPU's). Training draws randomness from torch only
    (dropout), so this is all a resumed run needs to draw the same numbers."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def save_checkpoint(model: Any, path: Path, state: Optional[dict[str, Any]]) -> None:
    """Write the model (reference layout), then its training state; a crash leaves no state beside a half model.

    Args:
        model: a ColBERT.
        path: the checkpoint folder.
        state: the training state, or None on ranks other than 0 (they write nothing).
    """
    if state is None:
        return
    (path / STATE_FILE).unlink(missing_ok=True)  # the folder is incomplete until the new state is written
    model.save(path)
    atomic_torch_save({"version": STATE_VERSION, **state}, path / STATE_FILE)
    logger.info("Saved checkpoint %s (step %d)", path, state["step"])
