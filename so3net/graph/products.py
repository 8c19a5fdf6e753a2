"""CG products as engine ops: the kernels' bilinear evaluation and weight gradient, on packed tensors.

Two primitives mirror :mod:`so3net.kernels.autograd` (same semantics, same gradient rule), but
record engine nodes instead of torch ones:

- ``Bilinear(a, b, w)``: ``z = o(P(a, c(b), w))`` — plan ``P``, ``c`` = conj when
  ``P.conj_right``, ``o`` = conj when ``conj_out``, optional real per-entry weights ``w``, and an
  optional row map (gathers and scatter-sum of the fused message-passing product);
- ``WeightGrad(g, a, b)``: ``gw[k] = Re sum_m o(g)[out_k] conj(u_k)`` with ``u_k`` the unweighted
  entry k of ``P(a, c(b))``.

Both evaluate with the backend in force at the forward (:func:`so3net.kernels.dispatch.resolve`:
"native" or "torch" on CPU tensors, Triton on CUDA tensors), and their gradients of every order
with the same engine, wherever ``backward`` is called. The input gradients follow the kernels' one statement of the
rule, :func:`so3net.kernels.autograd.gradient_rule` (torch's complex convention, real
coefficients): ``ga = Bilinear_{Pa}(gz, b, w)``, ``gb = Bilinear_{Pb}(gz, a, w)`` with the plans
and conj flags it gives; ``gw = WeightGrad(gz, a, b)``. The backward of ``WeightGrad`` is
``Bilinear`` (for g) and the input gradients (for a and b). Every gradient is an engine op again,
so derivatives of any order work. ``bilinear(plan, rows, a, b, w, conj_out)`` takes its arguments
in the order of the engines' ``bilinear``.

SO3vec Variables enter and leave through ``Pack``/``Unpack`` (the packed layout of
:mod:`so3net.plan`, batch dimensions flattened, shapes broadcast).
"""
from __future__ import annotations

import math

import torch

from ..kernels.autograd import gradient_rows, gradient_rule
from ..kernels.checks import check_operands, check_weights
from ..kernels.dispatch import resolve
from ..kernels.rows import RowMap, message_rows
from ..plan import CGPlan
from ..types import SO3vec
from .engine import Function, Variable
from .ops import expand, like, reshape

__all__ = ["pack", "unpack", "bilinear", "plan_product", "plan_message_passing"]


class Bilinear(Function):
    """``o(P(a, c(b), w))`` on packed tensors (see the module docstring)."""
    def forward(self, a, b, w, plan, rows, conj_out, engine):
        self.plan, self.rows, self.conj_out = plan, rows, conj_out
        self.engine = engine or resolve(None, a)          # its backward runs with the same engine
        return self.engine.bilinear(plan, rows, a, b, w, conj_out)

    def backward(self, g):
        a, b, w = self.parents
        ga, gb = _input_grads(self.plan, self.rows, self.conj_out, g, a, b, w, self.needs[0], self.needs[1],
                              self.engine)
        gw = (WeightGrad.apply(g, a, b, plan=self.plan, rows=self.rows, conj_g=self.conj_out, engine=self.engine)
              if self.needs[2] else None)
        return ga, gb, gw


class WeightGrad(Function):
    """``Re sum_m o(g) conj(u)`` per weight column (see the module docstring)."""
    def forward(self, g, a, b, plan, rows, conj_g, engine):
        self.plan, self.rows, self.conj_g, self.engine = plan, rows, conj_g, engine
        return engine.weight_grad(plan, rows, g, a, b, conj_g)

    def backward(self, ggw):
        g, a, b = self.parents
        o = self.conj_g
        gg = bilinear(self.plan, self.rows, a, b, ggw, o, self.engine) if self.needs[0] else None
        ga, gb = _input_grads(self.plan, self.rows, o, g, a, b, ggw, self.needs[1], self.needs[2], self.engine)
        return gg, ga, gb


def _input_grads(plan, rows, o: bool, gz, a, b, w, need_a: bool, need_b: bool, engine):
    (plan_a, conj_a), (plan_b, conj_b) = gradient_rule(plan, o)
    rows_a, rows_b = gradient_rows(rows)
    ga = bilinear(plan_a, rows_a, gz, b, w, conj_a, engine) if need_a else None
    gb = bilinear(plan_b, rows_b, gz, a, w, conj_b, engine) if need_b else None
    return ga, gb


def bilinear(plan: CGPlan, rows: RowMap | None, a, b, w=None, conj_out: bool = False, engine=None) -> Variable:
    """The engine primitive ``o(P(a, c(b), w))`` on packed tensor Variables (``w`` may be None);
    arguments in the order of the engines' ``bilinear``. ``engine``: the kernels' engine
    (default: the backend in force, :func:`so3net.kernels.dispatch.resolve`); the gradients of
    every order run with the engine of the forward."""
    return Bilinear.apply(a, b, w, plan=plan, rows=rows, conj_out=conj_out, engine=engine)


# ------------------------------------------------------------------------------ SO3vec <-> packed
class Pack(Function):
    """An SO3vec as its packed tensor ``(B, dim)``, batch ``batch`` (broadcast) flattened."""
    def forward(self, x, batch):
        self.tau, self.basis, self.batch = x.tau, x.basis, batch
        return x.packed().expand(*batch, x.tau.dim).reshape(math.prod(batch), x.tau.dim)

    def backward(self, g):
        return (like(unpack(g, self.tau, self.batch, self.basis), self.parents[0]),)


class Unpack(Function):
    """A packed tensor ``(B, dim)`` as an SO3vec of type tau and batch shape ``batch``."""
    def forward(self, t, tau, batch, basis):
        self.batch = batch
        return SO3vec.from_packed(t.reshape(*batch, t.shape[-1]), tau, basis=basis)

    def backward(self, g): return (pack(g, self.batch),)


def pack(x, batch=None) -> Variable:
    """Packed ``(B, dim)`` tensor Variable of an SO3vec Variable (batch broadcast to ``batch``)."""
    return Pack.apply(x, batch=tuple(x.value.batch if batch is None else batch))


def unpack(t, tau, batch, basis: str = "complex") -> Variable:
    return Unpack.apply(t, tau=tuple(tau), batch=tuple(batch), basis=basis)


# ------------------------------------------------------------------------------ products on SO3vecs
def _batch(*vs) -> tuple[int, ...]:
    return tuple(torch.broadcast_shapes(*(torch.Size(v.value.batch) for v in vs)))


def plan_product(x, y, plan: CGPlan, weights=None) -> Variable:
    """``plan(x, y)`` on two SO3vec Variables (batch shapes broadcast), optionally with real
    per-sample weights ``(b..., plan.num_weights)`` or shared ones ``(plan.num_weights,)`` (entry k
    of path p uses column ``plan.weight_offsets[p] + k``: the "uvu" product for a diag plan).
    Differentiable to any order in x, y and the weights."""
    batch = _batch(x, y)
    a = pack(x, batch)
    b = a if y is x else pack(y, batch)
    w = _weights(weights, a.value.shape[0], plan)
    check_operands(a.value, b.value, plan, None)
    check_weights(None if w is None else w.value, a.value, plan, a.value.shape[0])
    return unpack(bilinear(plan, None, a, b, w), plan.tau_out, batch, x.value.basis)


def plan_message_passing(edge, node, src: torch.Tensor, dst: torch.Tensor, plan: CGPlan, weights=None,
                         num_nodes: int | None = None) -> Variable:
    """The fused message-passing product ``out[i] = sum_{e: dst[e] = i} plan(edge[e], node[src[e]],
    weights[e])`` on SO3vec Variables with one batch dimension (edges; nodes), ``(num_nodes, ...)``;
    weights ``(E, plan.num_weights)`` or none. The Triton kernel forms no per-edge intermediate."""
    a, b = pack(edge), pack(node)
    n = node.value.batch[0] if num_nodes is None else int(num_nodes)
    rows = message_rows(src, dst, n, b.value.shape[0])
    w = _weights(weights, a.value.shape[0], plan)
    check_operands(a.value, b.value, plan, rows)
    check_weights(None if w is None else w.value, a.value, plan, rows.n_weight)
    return unpack(bilinear(plan, rows, a, b, w), plan.tau_out, (n,), node.value.basis)


def _weights(weights, rows: int, plan: CGPlan):
    """Weights as a ``(rows, num_weights)`` Variable (shared 1-d weights are expanded)."""
    if weights is None:
        return None
    w = weights if isinstance(weights, Variable) else Variable(weights)
    shape = tuple(w.value.shape)
    if len(shape) == 1:
        return expand(reshape(w, (1, shape[0])), (rows, shape[0]))
    return w if shape == (rows, shape[-1]) else reshape(w, (rows, shape[-1]))
