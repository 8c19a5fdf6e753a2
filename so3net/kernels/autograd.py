"""The autograd bridge shared by every backend: ``torch.autograd.Function``s (``Bilinear``,
``BilinearPair`` for both input gradients at once, ``WeightGrad``) whose backward passes are again
these Functions, so gradients of any order work.

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
:attr:`so3net.plan.CGPlan.backward_plans`; the plans and conj flags of each case are derived once,
in :func:`gradient_rule`, which the graph engine's product ops (:mod:`so3net.graph.products`) use
too.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import torch

from ..plan import CGPlan
from .checks import check_operands, check_weights
from .rows import RowMap, message_rows

__all__ = ["Bilinear", "BilinearPair", "WeightGrad", "gradient_rule", "gradient_rows", "input_grads", "product",
           "message_product"]


@lru_cache(maxsize=4096)
def _with_conj(plan: CGPlan, conj_right: bool) -> CGPlan:
    return plan if plan.conj_right == conj_right else dataclasses.replace(plan, conj_right=conj_right)


@lru_cache(maxsize=4096)
def gradient_rule(plan: CGPlan, conj_out: bool) -> tuple[tuple[CGPlan, bool], tuple[CGPlan, bool]]:
    """``((plan_a, conj_a), (plan_b, conj_b))``: the gradients of ``z = o(P(a, c(b), w))`` given ``gz``
    are ``ga = o_a(P_a(gz, b, w))`` and ``gb = o_b(P_b(gz, a, w))`` (each ``P_x`` reading its right
    operand conjugated iff ``P_x.conj_right``).

    With c = plan.conj_right and o = conj_out: ``ga = o(P_a(gz, conj(c(b)) ... ))``, which is ``P_a``
    reading ``b`` conjugated iff ``c == o``, its output conjugated iff ``o``; and
    ``gb = c(P_b(o(gz), conj a))``: ``P_b`` reading ``a`` conjugated iff ``not o``, its output
    conjugated iff ``c != o``. The one statement of the rule: every engine uses it.
    """
    px, py = plan.backward_plans
    c = plan.conj_right
    return (_with_conj(px, c == conj_out), conj_out), (_with_conj(py, not conj_out), c != conj_out)


def gradient_rows(rows: RowMap | None) -> tuple[RowMap | None, RowMap | None]:
    """The row maps of the two input gradients of a row-mapped product (re-keyed by the operand)."""
    return (None, None) if rows is None else (rows.by_left, rows.by_right)


def input_grads(engine, plan: CGPlan, rows, conj_out: bool, gz, a, b, w, need_a: bool, need_b: bool):
    """Gradients of ``z = o(P(a, c(b), w))`` for ``a`` and ``b`` given ``gz``, as products
    (:func:`gradient_rule`)."""
    (plan_a, conj_a), (plan_b, conj_b) = gradient_rule(plan, conj_out)
    if need_a and need_b and rows is None and w is None and hasattr(engine, "bilinear_pair"):
        return BilinearPair.apply(engine, plan_a, conj_a, plan_b, conj_b, gz, b, a)
    rows_a, rows_b = gradient_rows(rows)
    ga = Bilinear.apply(engine, plan_a, rows_a, conj_a, gz, b, w) if need_a else None
    gb = Bilinear.apply(engine, plan_b, rows_b, conj_b, gz, a, w) if need_b else None
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


class BilinearPair(torch.autograd.Function):
    """Both input gradients of an unweighted row-wise product in one engine call (which may read
    ``gz`` once): ``(o_a(P_a(gz, b)), o_b(P_b(gz, a)))`` with the conj flags of
    :func:`input_grads`; its backward is the sum of the two :class:`Bilinear` backwards."""

    @staticmethod
    def forward(ctx, engine, plan_a, conj_a, plan_b, conj_b, gz, b, a):
        ctx.meta = (engine, plan_a, conj_a, plan_b, conj_b)
        ctx.save_for_backward(gz, b, a)
        ctx.set_materialize_grads(False)
        return engine.bilinear_pair(plan_a, conj_a, plan_b, conj_b, gz, b, a)

    @staticmethod
    def backward(ctx, gga, ggb):
        gz, b, a = ctx.saved_tensors
        engine, plan_a, conj_a, plan_b, conj_b = ctx.meta
        need_gz, need_b, need_a = ctx.needs_input_grad[5:8]
        d_gz = d_b = d_a = None
        if gga is not None:
            d_gz, d_b = input_grads(engine, plan_a, None, conj_a, gga, gz, b, None, need_gz, need_b)
        if ggb is not None:
            more, d_a = input_grads(engine, plan_b, None, conj_b, ggb, gz, a, None, need_gz, need_a)
            d_gz = more if d_gz is None else (d_gz if more is None else d_gz + more)
        return None, None, None, None, None, d_gz, d_b, d_a


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
