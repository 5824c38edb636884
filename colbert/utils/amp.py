"""The reference's `colbert.utils.amp.MixedPrecisionManager`: autocast + gradient scaling when activated."""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch

__all__ = ["MixedPrecisionManager"]


class MixedPrecisionManager:
    """Mixed precision for a training loop, on CUDA only (on CPU `activated` is turned off, as in the reference).

    Args:
        activated: use fp16 autocast and a GradScaler.
    """

    def __init__(self, activated: bool) -> None:
        self.activated = bool(activated) and torch.cuda.is_available()
        self.scaler = torch.amp.GradScaler("cuda") if self.activated else None

    def context(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda") if self.activated else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, colbert: torch.nn.Module, optimizer: Any, scheduler: Optional[Any] = None) -> None:
        """Clip gradients to norm 2.0 (the reference's), step the optimizer and scheduler, zero the gradients."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(colbert.parameters(), 2.0, error_if_nonfinite=False)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad()
