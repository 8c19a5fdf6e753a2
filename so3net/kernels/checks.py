"""Argument checks shared by every backend: packed shapes, dtypes, devices, weights, row maps.

Packed layout and weight indexing are those of :mod:`so3net.plan`; row maps those of
:mod:`so3net.kernels.rows`. Each check raises ``ValueError`` naming what was expected.
"""
from __future__ import annotations

import torch

from ..plan import CGPlan
from .rows import RowMap

__all__ = ["check_operands", "check_weights", "DTYPES"]

DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def check_operands(a: torch.Tensor, b: torch.Tensor, plan: CGPlan, rows: RowMap | None) -> None:
    """``a (n_left, plan.dim1)`` and ``b (n_right, plan.dim2)`` of one supported dtype and device."""
    n_a = rows.n_left if rows is not None else (a.shape[0] if a.dim() == 2 else None)
    n_b = rows.n_right if rows is not None else n_a
    if a.dim() != 2 or a.shape != (n_a, plan.dim1):
        raise ValueError(f"x must be packed with shape ({n_a}, {plan.dim1}) for type {plan.tau1}, "
                         f"got {tuple(a.shape)}")
    if b.dim() != 2 or b.shape != (n_b, plan.dim2):
        raise ValueError(f"y must be packed with shape ({n_b}, {plan.dim2}) for type {plan.tau2}, "
                         f"got {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"x and y must be on one device, got {a.device} and {b.device}")
    if a.dtype != b.dtype:
        raise ValueError(f"x and y must have one dtype, got {a.dtype} and {b.dtype}")
    if a.dtype not in DTYPES:
        raise ValueError(f"CG kernels support dtypes {DTYPES}, got {a.dtype}")


def check_weights(w: torch.Tensor | None, a: torch.Tensor, plan: CGPlan, n_rows: int) -> None:
    """Weights are real, ``(n_rows, plan.num_weights)``, of the operands' real dtype and device."""
    if w is None:
        return
    real = a.real.dtype if a.is_complex() else a.dtype
    if w.dim() != 2 or w.shape != (n_rows, plan.num_weights):
        raise ValueError(f"weights must have shape ({n_rows}, {plan.num_weights}) (one per sample and "
                         f"path entry, see CGPlan.weight_offsets), got {tuple(w.shape)}")
    if w.dtype != real or w.device != a.device:
        raise ValueError(f"weights must be real {real} on {a.device} like the operands, got {w.dtype} on "
                         f"{w.device}")
