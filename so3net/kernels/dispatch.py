"""The one entry point from the types layer into the CG product kernels.

``cg_product(x, y, plan, backend=None)`` evaluates a compiled plan (:mod:`so3net.plan`) on packed
tensors ``x (B, plan.dim1)`` and ``y (B, plan.dim2)`` and returns ``z (B, plan.dim_out)``; the
result is differentiable by torch autograd. Only the torch twin is wired here; asking for any
other backend raises (no silent fallback).
"""
from __future__ import annotations

import torch

from ..plan import CGPlan
from .torch_cg import cg_product as _torch_cg_product

__all__ = ["cg_product"]


def cg_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan, backend: str | None = None) -> torch.Tensor:
    """Evaluate ``plan`` on packed ``x`` and ``y`` with the given backend (``None`` or ``"torch"``)."""
    if backend not in (None, "torch"):
        raise ValueError(f"backend {backend!r} is not available here; expected None or 'torch'")
    return _torch_cg_product(x, y, plan)
