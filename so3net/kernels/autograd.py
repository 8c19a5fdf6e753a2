"""The autograd bridge shared by every backend: two ``torch.autograd.Function``s whose backward
passes are again these Functions, so gradients of any order work.

An *engine* (the torch twin :mod:`.torch_cg`, the Triton launchers :mod:`.triton_ops`) provides
two raw, non-differentiable evaluations on packed tensors (layout of :mod:`so3net.plan`, row maps
of :mod:`.rows`):

- ``bilinear(plan, rows, a, b, w, conj_out)``: ``z = o(P(a, c(b), w))`` where ``c`` is ``conj``
  when ``plan.conj_right``, ``o`` is ``conj`` when ``conj_out``, and ``w`` the optional real
  per-entry weights;
- ``weight_grad(plan, rows, g, a, b, conj_g)``: ``gw[k] = Re sum_m o(g)[out_k] conj(u_k)``, with
  ``u_k`` the unweighted entry k of ``P(a, c(b))`` (the gradient of the weights).

Gradient rule (torch's complex convention: ``grad = dL/dRe + i dL/dIm``), with real coefficients:
``ga = o'(P_a(gz, ...))`` and ``gb = o''(P_b(gz, ...))`` with the backward plans of
:attr:`so3net.plan.CGPlan.backward_plans`; the conj flags of each case are derived in
:func:`input_grads`.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import torch

from ..plan import CGPlan
from .checks import check_operands, check_weights
from .rows import RowMap, message_rows

__all__ = ["Bilinear", "WeightGrad", "input_grads", "product", "message_product"]


@lru_cache(maxsize=4096)
def _with_conj(plan: CGPlan, conj_right: bool) -> CGPlan:
    return plan if plan.conj_right == conj_right else dataclasses.replace(plan, conj_right=conj_right)


def _by(rows: RowMap | None, side: str) -> RowMap | None:
    return None if rows is None else getattr(rows, side)


def input_grads(engine, plan: CGPlan, rows, conj_out: bool, gz, a, b, w, need_a: bool, need_b: bool):
    """Gradients of ``z = o(P(a, c(b), w))`` for ``a`` and ``b`` given ``gz``, as products.

    With c = plan.conj_right and o = conj_out: ``ga = o(P_a(gz, conj(c(b)) ... ))`` which is
    ``P_a`` reading ``b`` conjugated iff ``c == o``, its output conjugated iff ``o``; and
    ``gb = c(P_b(o(gz), conj a))``: ``P_b`` reading ``a`` conjugated iff ``not o``, its output
    conjugated iff ``c != o``.
    """
    px, py = plan.backward_plans
    c = plan.conj_right
    ga = gb = None
    if need_a:
        ga = Bilinear.apply(engine, _with_conj(px, c == conj_out), _by(rows, "by_left"), conj_out, gz, b, w)
    if need_b:
        gb = Bilinear.apply(engine, _with_conj(py, not conj_out), _by(rows, "by_right"), c != conj_out, gz, a, w)
    return ga, gb


class Bilinear(torch.autograd.Function):
    """``z = o(P(a, c(b), w))`` through ``engine.bilinear``; see the module docstring."""

    @staticmethod
    def forward(ctx, engine, plan, rows, conj_out, a, b, w):
        ctx.meta = (engine, plan, rows, conj_out)
        ctx.save_for_backward(a, b, w)
        return engine.bilinear(plan, rows, a, b, w, conj_out)

    @staticmethod
    def backward(ctx, gz):
        a, b, w = ctx.saved_tensors
        engine, plan, rows, o = ctx.meta
        need = ctx.needs_input_grad
        ga, gb = input_grads(engine, plan, rows, o, gz, a, b, w, need[4], need[5])
        gw = WeightGrad.apply(engine, plan, rows, o, gz, a, b) if w is not None and need[6] else None
        return None, None, None, None, ga, gb, gw


class WeightGrad(torch.autograd.Function):
    """``gw = Re sum o(g) conj(u)`` through ``engine.weight_grad``; its backward is the weighted
    product itself (for ``g``) and the input gradients of that product (for ``a`` and ``b``)."""

    @staticmethod
    def forward(ctx, engine, plan, rows, conj_g, g, a, b):
        ctx.meta = (engine, plan, rows, conj_g)
        ctx.save_for_backward(g, a, b)
        return engine.weight_grad(plan, rows, g, a, b, conj_g)

    @staticmethod
    def backward(ctx, ggw):
        g, a, b = ctx.saved_tensors
        engine, plan, rows, o = ctx.meta
        need = ctx.needs_input_grad
        gg = Bilinear.apply(engine, plan, rows, o, a, b, ggw) if need[4] else None
        ga, gb = input_grads(engine, plan, rows, o, g, a, b, ggw, need[5], need[6])
        return None, None, None, None, gg, ga, gb


def product(engine, plan: CGPlan, a: torch.Tensor, b: torch.Tensor, weights=None) -> torch.Tensor:
    """Differentiable row-wise ``P(a, b, weights)`` with ``engine``; arguments are checked."""
    check_operands(a, b, plan, None)
    check_weights(weights, a, plan, a.shape[0])
    return Bilinear.apply(engine, plan, None, False, a, b, weights)


def message_product(engine, plan: CGPlan, edge: torch.Tensor, node: torch.Tensor, src: torch.Tensor,
                    dst: torch.Tensor, weights=None, num_nodes: int | None = None) -> torch.Tensor:
    """Differentiable ``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]], weights[e])``."""
    rows = message_rows(src, dst, node.shape[0] if num_nodes is None else num_nodes, node.shape[0])
    check_operands(edge, node, plan, rows)
    check_weights(weights, edge, plan, rows.n_weight)
    return Bilinear.apply(engine, plan, rows, False, edge, node, weights)
