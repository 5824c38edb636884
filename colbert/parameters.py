"""The reference's `colbert.parameters`: DEVICE and SAVED_CHECKPOINTS (the training steps it saved at).

DEVICE is computed on first access, not at import (importing colbert queries no GPU).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEVICE", "SAVED_CHECKPOINTS"]

SAVED_CHECKPOINTS = {n * 1000 for n in (10, 20, 25, 30, 32, 40, 50, 60, 70, 75, 80, 90, 100, 150, 200, 250, 300, 400)}


def __getattr__(name: str) -> Any:
    if name == "DEVICE":
        import torch

        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise AttributeError(f"module 'colbert.parameters' has no attribute '{name}'")
