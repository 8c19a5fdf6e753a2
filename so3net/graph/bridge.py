"""The torch bridge: the CG kernels as a ``torch.autograd.Function`` with double backward, and the
gradient rule that the engine's CG op shares with it.

Gradient rule (torch's complex convention, see :mod:`so3net.graph.engine`). A plan ``P`` evaluates
the bilinear form ``z = B_P(x, y)``, or ``B_P(x, conj y)`` when ``P.conj_right``; its
``backward_plans`` ``(Px, Py)`` read ``conj`` of their right operand. Then, with ``g = dL/dz``:

- ``P.conj_right == False``: ``gx = Px(g, y)`` and ``gy = Py(g, x)`` (the plans conjugate y, x);
- ``P.conj_right == True``:  ``gx = Px'(g, y)`` with ``Px'`` = Px reading y unconjugated, and
  ``gy = conj(Py(g, x))`` (z depends on y through conj y).

The gradients are evaluated by the same product function, so they are differentiable again: the
backward of a backward is a product with the backward plans of a backward plan, to any order.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import torch

from ..kernels.dispatch import cg_product as _dispatch
from ..plan import CGPlan

__all__ = ["gradient_plans", "CGProductFunction", "cg_product"]


@lru_cache(maxsize=4096)
def gradient_plans(plan: CGPlan) -> tuple[CGPlan, CGPlan, bool]:
    """``(plan_x, plan_y, conj_y)``: ``gx = plan_x(g, y)``, ``gy = plan_y(g, x)``, conjugated
    when ``conj_y`` (see the module docstring)."""
    px, py = plan.backward_plans
    if plan.conj_right:
        return dataclasses.replace(px, conj_right=False), py, True
    return px, py, False


class CGProductFunction(torch.autograd.Function):
    """``z = plan(x, y)`` on packed ``(B, dim)`` tensors; backward (of any order) through itself."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
        ctx.plan = plan
        ctx.save_for_backward(x, y)
        return _dispatch(x, y, plan)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, y = ctx.saved_tensors
        px, py, conj_y = gradient_plans(ctx.plan)
        gx = CGProductFunction.apply(g, y, px) if ctx.needs_input_grad[0] else None
        gy = None
        if ctx.needs_input_grad[1]:
            gy = CGProductFunction.apply(g, x, py)
            gy = gy.conj() if conj_y and gy.is_complex() else gy
        return gx, gy, None


def cg_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """Evaluate ``plan`` on packed ``x (B, plan.dim1)`` and ``y (B, plan.dim2)`` with the kernels;
    differentiable by torch autograd to any order (``create_graph=True`` works)."""
    return CGProductFunction.apply(x, y, plan)
