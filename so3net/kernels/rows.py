"""Row maps: which rows of the operands feed which output row (gathers and scatter-sums).

A product with a row map has entries e = 0..E-1; entry e reads row ``left[e]`` of the left
operand, row ``right[e]`` of the right operand and row ``weight[e]`` of the weights, and its
result is summed into output row ``out[e]``::

    z[out[e]] += P(a[left[e]], b[right[e]], w[weight[e]])

Without a row map (``rows=None``) the product is row-wise: entry b reads and writes row b.
The fused message-passing product is the row map ``out = dst, left = arange(E), right = src,
weight = arange(E)``. Gradients of a row-mapped product are row-mapped products whose map is
re-keyed by the operand they differentiate (:meth:`RowMap.by_left`, :meth:`RowMap.by_right`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

__all__ = ["RowMap", "message_rows"]


@dataclass(frozen=True, eq=False)
class RowMap:
    """Entries of a gathered, scatter-summed product (see the module docstring).

    ``out``, ``left``, ``right`` and ``weight`` are int64 tensors of shape (E,) on the operands'
    device; ``n_out``, ``n_left``, ``n_right`` and ``n_weight`` are the row counts of the output,
    the two operands and the weights.
    """
    out: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    weight: torch.Tensor
    n_out: int
    n_left: int
    n_right: int
    n_weight: int

    @property
    def num_entries(self) -> int:
        return int(self.out.shape[0])

    @cached_property
    def by_left(self) -> "RowMap":
        """The map of the left operand's gradient: entries write row ``left[e]`` and read the
        output gradient at ``out[e]`` (as left operand) and ``b`` at ``right[e]``."""
        return RowMap(self.left, self.out, self.right, self.weight, self.n_left, self.n_out, self.n_right,
                      self.n_weight)

    @cached_property
    def by_right(self) -> "RowMap":
        """The map of the right operand's gradient: entries write row ``right[e]`` and read the
        output gradient at ``out[e]`` (as left operand) and ``a`` at ``left[e]``."""
        return RowMap(self.right, self.out, self.left, self.weight, self.n_right, self.n_out, self.n_left,
                      self.n_weight)

    @cached_property
    def csr(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Entries sorted by output row: ``(rowptr (n_out+1,), left, right, weight)``, int32.
        Entries of output row i are ``rowptr[i]:rowptr[i+1]`` of the sorted arrays."""
        order = torch.argsort(self.out, stable=True)
        counts = torch.bincount(self.out, minlength=self.n_out)
        rowptr = torch.zeros(self.n_out + 1, dtype=torch.int64, device=self.out.device)
        rowptr[1:] = torch.cumsum(counts, 0)
        return tuple(t.to(torch.int32).contiguous() for t in
                     (rowptr, self.left[order], self.right[order], self.weight[order]))


def message_rows(src: torch.Tensor, dst: torch.Tensor, num_nodes: int, num_src_nodes: int) -> RowMap:
    """The row map of ``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]], w[e])``.

    ``src`` and ``dst`` are integer tensors (E,) with values in [0, num_src_nodes) and
    [0, num_nodes); edge e reads row e of the edge features and of the weights.
    """
    for name, t, bound in (("src", src, num_src_nodes), ("dst", dst, num_nodes)):
        if t.dim() != 1 or t.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{name} must be a 1-d integer tensor of edge endpoints, got shape "
                             f"{tuple(t.shape)} and dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= bound):
            raise ValueError(f"{name} indices must lie in [0, {bound}), got range "
                             f"[{int(t.min())}, {int(t.max())}]")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have one length (one entry per edge), got {src.shape[0]} and "
                         f"{dst.shape[0]}")
    E = src.shape[0]
    edges = torch.arange(E, device=src.device)
    return RowMap(dst.long(), edges, src.long(), edges, int(num_nodes), E, int(num_src_nodes), E)
