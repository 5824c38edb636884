"""Choosing the device once, at the facade; everything below only calls `.to(device)`."""

from __future__ import annotations

from typing import Optional, Union

import torch

from colbert.infra.config import ColBERTConfig


def resolve_device(config: Optional[ColBERTConfig] = None, device: Union[str, torch.device, None] = None) -> torch.device:
    """An explicit `device` wins; else CUDA when visible and `config.gpus` is not 0; else MPS; else CPU."""
    if device is not None:
        return torch.device(device)
    gpus = config.gpus if config is not None else None
    if gpus != 0 and torch.cuda.is_available():
        return torch.device("cuda")
    if gpus != 0 and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
