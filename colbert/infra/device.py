"""Choosing the device once, at the facade; everything below only calls `.to(device)`."""

from __future__ import annotations

import functools
import logging
import platform
from typing import Optional, Union

import torch

from colbert.infra.config import ColBERTConfig

logger = logging.getLogger(__name__)


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


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (x86 AVX512-BF16 or AMX, Linux aarch64 with the BF16 extension).

    Elsewhere oneDNN emulates bf16, which is slower than fp32, so reduced precision is not worth it there.
    """
    try:
        if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
            return True
        if platform.system() == "Linux" and platform.machine().lower() in ("aarch64", "arm64"):
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without these probes: stay in fp32
        pass
    return False


def indexing_uses_bf16(config: ColBERTConfig, device: torch.device) -> bool:
    """Whether indexing runs its bulk matmuls in bf16 on this CPU: the encoder's forward (autocast), k-means and the
    screening of centroid codes (re-checked in fp32).

    True on CPU when `config.amp` is set (the default) and the CPU has native bf16. This is the CPU counterpart of
    the fp16 autocast that both the reference and this library use on CUDA: what indexing stores is compressed to
    `nbits` per dimension, far coarser than bf16. `amp=False` keeps indexing in fp32.
    """
    use = device.type == "cpu" and bool(config.amp) and cpu_has_native_bf16()
    if use:
        logger.debug("Indexing in bf16 on this CPU (native bf16; amp=False keeps fp32)")
    return use
