"""StridedTensor (the reference's `colbert.search.strided_tensor`, which aliases this module): variable-length rows
packed end to end.

Here search reads offsets directly (colbert.search.plaid, colbert.kernels.gather_segments); this class is for
scripts that build or read StridedTensors (`searcher.ranker.ivf` is a plain tensor with `ivf_offsets` here).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from colbert import kernels

__all__ = ["StridedTensor"]


class StridedTensor:
    """Rows of `packed_tensor` grouped by `lengths`: element i is `packed_tensor[offsets[i]:offsets[i + 1]]`.

    Shapes: packed_tensor (sum(lengths), *inner); lengths (n,).
    """

    def __init__(self, packed_tensor: Tensor, lengths: Union[Tensor, Sequence[int]], dim: Optional[int] = None,
                 use_gpu: bool = True) -> None:
        self.tensor, self.dim, self.use_gpu = packed_tensor, dim, use_gpu
        self.lengths = torch.as_tensor(lengths, dtype=torch.int64)
        self.offsets = torch.nn.functional.pad(torch.cumsum(self.lengths, 0), (1, 0))  # (n + 1,)
        if int(self.offsets[-1]) > packed_tensor.size(0):
            raise ValueError(f"lengths sum to {int(self.offsets[-1]):,} but the tensor has {packed_tensor.size(0):,} rows")
        self.inner_dims = packed_tensor.size()[1:]

    def lookup(self, pids: Union[Tensor, Sequence[int]], output: str = "packed") -> tuple[Tensor, Tensor]:
        """Elements `pids` in order: output='packed' -> (rows laid end to end, lengths); 'padded' -> (padded to
        the longest (n, L, *inner), mask (n, L))."""
        pids = torch.as_tensor(pids, dtype=torch.int64).reshape(-1)
        packed, lengths = kernels.gather_segments(self.tensor, self.offsets, pids)
        if output == "packed":
            return packed, lengths
        if output != "padded":
            raise ValueError(f"output must be 'packed' or 'padded', got {output!r}")
        return self._pad(packed, lengths)

    def as_packed_tensor(self) -> tuple[Tensor, Tensor]:
        return self.tensor[: int(self.offsets[-1])], self.lengths

    def as_padded_tensor(self) -> tuple[Tensor, Tensor]:
        return self._pad(self.tensor[: int(self.offsets[-1])], self.lengths)

    @staticmethod
    def _pad(packed: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        longest = int(lengths.max()) if lengths.numel() else 0
        mask = torch.arange(longest) < lengths[:, None]  # (n, L)
        padded = packed.new_zeros((lengths.numel(), longest, *packed.shape[1:]))
        padded[mask] = packed
        return padded, mask
