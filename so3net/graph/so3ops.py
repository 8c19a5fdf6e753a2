"""Primitive ops on ``SO3vec`` values: parts, fragments, direct sums, scaling, weight mixing, inner
products and the CG product family.

Conventions are those of :mod:`so3net.types` (parts ``(b..., 2l+1, n)``, fragment order of the
products, packed layout of :mod:`so3net.plan`) and the complex gradient convention of
:mod:`so3net.graph.engine`. Per-fragment quantities of a vector of type tau are tensors
``(b..., K)`` with ``K = sum_l tau[l]``, fragments of part 0 first, then part 1, and so on.

The CG products evaluate their compiled plan with the kernels (see :mod:`.products`); their
backward is the same product with the plan's backward plans.
"""
from __future__ import annotations

import math

import torch

from .. import types as T
from ..kernels import dispatch as _dispatch
from ..plan import CGPlan, cg_plan
from ..types import SO3vec
from .engine import Function, Variable, deferrable
from .products import plan_message_passing, plan_product
from .ops import conj, index, like, matmul, reshape, sum as _sum, transpose

__all__ = ["part", "from_parts", "take", "fragments", "oplus", "scale", "fragment_scale", "inp", "norm2",
           "norm", "mix", "plan_product", "plan_message_passing", "CGproduct", "DiagCGproduct", "CGsquare",
           "message_passing", "so3_mul"]


def _zeros(tau, batch, like_value: torch.Tensor, basis: str) -> SO3vec:
    return SO3vec({l: like_value.new_zeros(*batch, 2 * l + 1, n) for l, n in enumerate(tau)}, basis=basis)


def _offsets(tau) -> list[int]:
    out = [0]
    for n in tau:
        out.append(out[-1] + n)
    return out


# ------------------------------------------------------------------------------ parts and fragments
class Part(Function):
    """Part l of an SO3vec as a tensor ``(b..., 2l+1, n)``."""
    def forward(self, x, l): self.l, self.tau, self.basis = l, x.tau, x.basis; return x.parts[l]
    def backward(self, g): return (PartFill.apply(g, l=self.l, tau=self.tau, basis=self.basis),)


class PartFill(Function):
    """The SO3vec of type tau that is zero except for part l, which is ``g`` (adjoint of Part)."""
    def forward(self, g, l, tau, basis):
        self.l = l
        z = _zeros(tau, g.shape[:-2], g, basis)
        z.parts[l] = g
        return z

    def backward(self, g): return (part(g, self.l),)


class FromParts(Function):
    """An SO3vec from part tensors for l = 0..L."""
    def forward(self, *parts, basis="complex"): return SO3vec(list(parts), basis=basis)
    def backward(self, g): return tuple(part(g, l) for l in range(len(self.parents)))


class Take(Function):
    """Fragments ``sel[l]`` (a slice or a tuple of indices) of parts l = 0..len(sel)-1."""
    def forward(self, x, sel):
        self.sel, self.tau = sel, x.tau
        return SO3vec({l: x.parts[l][..., _index(s)] for l, s in enumerate(sel)}, basis=x.basis)

    def backward(self, g): return (TakeFill.apply(g, sel=self.sel, tau=self.tau),)


class TakeFill(Function):
    """Zeros of type tau with ``g`` added at the fragments ``sel`` (adjoint of Take)."""
    def forward(self, g, sel, tau):
        self.sel = sel
        z = _zeros(tau, g.batch, g.parts[0], g.basis)
        for l, s in enumerate(sel):
            if isinstance(s, slice):
                z.parts[l][..., s] = g.parts[l]
            else:
                z.parts[l].index_add_(-1, torch.as_tensor(s, device=g.device), g.parts[l])
        return z

    def backward(self, g): return (Take.apply(g, sel=self.sel),)


def _index(s):
    return s if isinstance(s, slice) else list(s)


class Oplus(Function):
    """Direct sum: fragments concatenated l by l (``types.cat``)."""
    def forward(self, *xs): self.taus = [x.tau for x in xs]; return T.cat(xs)

    def backward(self, g):
        start = [0] * max(len(t) for t in self.taus)
        grads = []
        for tau in self.taus:
            grads.append(take(g, tuple(slice(start[l], start[l] + n) for l, n in enumerate(tau))))
            start = [s + (tau[l] if l < len(tau) else 0) for l, s in enumerate(start)]
        return tuple(like(gi, p) for gi, p in zip(grads, self.parents))


# ------------------------------------------------------------------------------ scaling and invariants
class Scale(Function):
    """``x * s`` with s a number or a tensor broadcasting against the batch (per-sample scalar)."""
    def forward(self, x, s): return x * s

    def backward(self, g):
        x, s = self.parents
        return (like(scale(g, conj(s)), x) if self.needs[0] else None,
                like(_sum(inp(x, g), -1), s) if self.needs[1] else None)


class FragmentScale(Function):
    """Fragment k of x times ``s[..., k]`` (s of shape ``(b..., K)``, see the module docstring)."""
    def forward(self, x, s):
        off = _offsets(x.tau)
        s = s.to(x.dtype) if x.dtype.is_complex else s
        return x._map(lambda l, p: p * s[..., None, off[l]:off[l + 1]])

    def backward(self, g):
        x, s = self.parents
        return (like(fragment_scale(g, conj(s)), x) if self.needs[0] else None,
                like(inp(x, g), s) if self.needs[1] else None)


class Inp(Function):
    """Per-fragment inner products ``sum_m conj(x) y``: a tensor ``(b..., K)``."""
    def forward(self, x, y):
        d = x.inp(y)
        return torch.cat([d[l] for l in range(len(d))], -1)

    def backward(self, g):
        x, y = self.parents
        return (like(fragment_scale(y, conj(g)), x) if self.needs[0] else None,
                like(fragment_scale(x, g), y) if self.needs[1] else None)


class Mix(Function):
    """Per-l fragment mixing ``x^l @ W[l]`` (``SO3vec.mix``); one weight matrix per l = 0..L."""
    def forward(self, x, *W): return x.mix(list(W))

    def backward(self, g):
        x, W = self.parents[0], self.parents[1:]
        gx = mix(g, *[conj(transpose(w)) for w in W]) if self.needs[0] else None
        return (gx,) + tuple(like(_weight_grad(part(x, l), part(g, l), w), w) if self.needs[l + 1] else None
                             for l, w in enumerate(W))


def _weight_grad(X: Variable, G: Variable, w: Variable) -> Variable:
    """``sum over batch and m of conj(X)^T G`` (one GEMM for 2-D weights)."""
    if w.value.dim() == 2:
        rows = math.prod(X.value.shape[:-1])
        X, G = reshape(X, (rows, X.value.shape[-1])), reshape(G, (rows, G.value.shape[-1]))
    return matmul(conj(transpose(X)), G)


# ------------------------------------------------------------------------------ CG products
def _plan(vx, vy, kind: str, maxl, op: str) -> CGPlan:
    for v in (vx, vy):
        if not isinstance(v, SO3vec):
            raise TypeError(f"{op} expects SO3vec operands, got {type(v).__name__}")
    if kind == "diag":
        vx.tau.DiagCGproduct(vy.tau, maxl)  # raises with the expected types
    try:
        return cg_plan(tuple(vx.tau), tuple(vy.tau), maxl, kind, vx.basis)
    except ValueError as err:
        raise ValueError(f"{op} of types {vx.tau} and {vy.tau}: {err}") from None


def _product(x, y, kind: str, maxl, normalized: bool, op: str, weights=None):
    plan = _plan(_value(x), _value(y), kind, maxl, op)
    if not any(isinstance(a, Variable) for a in (x, y, weights)):
        return T.SO3vec.from_packed(_dispatch_weighted(x, y, plan, weights, normalized), plan.tau_out, basis=x.basis)
    z = plan_product(*_both(x, y), plan, weights)
    return fragment_scale(z, Variable(_normalization(plan, _value(x).parts[0]))) if normalized else z


def _dispatch_weighted(x: SO3vec, y: SO3vec, plan: CGPlan, weights, normalized: bool) -> torch.Tensor:
    """Plain SO3vecs with weights: the kernels' differentiable weighted product (torch autograd)."""
    batch = tuple(torch.broadcast_shapes(torch.Size(x.batch), torch.Size(y.batch)))
    B = math.prod(batch)
    xp, yp = (v.packed().expand(*batch, v.tau.dim).reshape(B, v.tau.dim) for v in (x, y))
    w = weights.reshape(-1, plan.num_weights).expand(B, plan.num_weights)
    z = _dispatch.weighted_product(xp, yp, plan, w)
    if normalized:  # per-fragment factors laid out like part l: (2l+1, n) row-major
        s, off = _normalization(plan, z), _offsets(plan.tau_out)
        z = z * torch.cat([s[off[l]:off[l + 1]].repeat(2 * l + 1) for l in range(len(plan.tau_out))])
    return z.reshape(*batch, plan.dim_out)


def _normalization(plan: CGPlan, like_value: torch.Tensor) -> torch.Tensor:
    """Per output fragment: ``sqrt((2 l1 + 1)(2 l2 + 1) / (2 l + 1))`` of its path (types convention)."""
    off, scale = _offsets(plan.tau_out), [1.0] * sum(plan.tau_out)
    for p in plan.paths:
        for o in p.out:
            scale[off[p.l] + o] = math.sqrt((2 * p.l1 + 1) * (2 * p.l2 + 1) / (2 * p.l + 1))
    return torch.tensor(scale, dtype=like_value.real.dtype, device=like_value.device)


def _value(x):
    return x.value if isinstance(x, Variable) else x


def _both(x, y):
    return (x if isinstance(x, Variable) else Variable(x)), (y if isinstance(y, Variable) else Variable(y))


@deferrable
def CGproduct(x, y, maxl: int | None = None, normalized: bool = False):
    """Full CG product (all fragment pairs) of SO3vec Variables, type ``x.tau.CGproduct(y.tau, maxl)``;
    on two plain SO3vecs it is :func:`so3net.types.CGproduct`."""
    if not isinstance(x, Variable) and not isinstance(y, Variable):
        return T.CGproduct(x, y, maxl=maxl, normalized=normalized)
    return _product(x, y, "full", maxl, normalized, "CGproduct")


@deferrable
def DiagCGproduct(x, y, maxl: int | None = None, normalized: bool = False, weights=None):
    """Diagonal CG product (fragment i with fragment i; equal types). With ``weights`` (real,
    ``(b..., plan.num_weights)`` or shared ``(plan.num_weights,)``: one weight per output fragment,
    in plan path order) it is the weighted channel-wise ("uvu") product of the kernels."""
    if weights is None and not isinstance(x, Variable) and not isinstance(y, Variable):
        return T.DiagCGproduct(x, y, maxl=maxl, normalized=normalized)
    return _product(x, y, "diag", maxl, normalized, "DiagCGproduct", weights)


@deferrable
def CGsquare(x, maxl: int | None = None, normalized: bool = False):
    """Symmetric square (unordered fragment pairs only) of an SO3vec Variable."""
    if not isinstance(x, Variable):
        return T.CGsquare(x, maxl=maxl, normalized=normalized)
    return _product(x, x, "square", maxl, normalized, "CGsquare")


@deferrable
def message_passing(edge, node, src: torch.Tensor, dst: torch.Tensor, kind: str = "diag", maxl: int | None = None,
                    weights=None, num_nodes: int | None = None):
    """The fused message-passing product ``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]])``
    with P the ``kind`` ("full" or "diag") CG product, optionally weighted per edge
    (``(E, plan.num_weights)``); ``edge (E, ...)``, ``node (N, ...)``, result ``(num_nodes, ...)``.
    Equal to ``scatter_sum(P(edge, gather(node, src)), dst, num_nodes)`` without the per-edge
    intermediate in the Triton kernel."""
    plan = _plan(_value(edge), _value(node), kind, maxl, "message_passing")
    if not any(isinstance(a, Variable) for a in (edge, node, weights)):
        z = _dispatch.message_passing_product(edge.packed(), node.packed(), src, dst, plan, weights, num_nodes)
        return T.SO3vec.from_packed(z, plan.tau_out, basis=edge.basis)
    return plan_message_passing(*_both(edge, node), src, dst, plan, weights, num_nodes)


# ------------------------------------------------------------------------------ functional API
def part(x, l: int) -> Variable:
    """Part ``l`` of an SO3vec Variable as a tensor Variable ``(b..., 2l+1, n)``."""
    return Part.apply(x, l=int(l))


def from_parts(parts, basis: str = "complex") -> Variable:
    """An SO3vec Variable from a list of part tensors (l = 0..L)."""
    return FromParts.apply(*parts, basis=basis)


def take(x, sel) -> Variable:
    """Fragments ``sel[l]`` (slice or tuple of ints) of parts l = 0..len(sel)-1; parts above are dropped."""
    return Take.apply(x, sel=tuple(s if isinstance(s, slice) else tuple(int(i) for i in s) for s in sel))


@deferrable
def fragments(x, index: dict) -> Variable:
    """As ``SO3vec.fragments``: select fragments per l (slice or int list); parts not named keep all."""
    tau = x.value.tau
    bad = [l for l in index if not 0 <= l < len(tau)]
    if bad:
        raise IndexError(f"fragments: SO3vec of type {tau} has parts l = 0..{len(tau) - 1}, got l={bad}")
    return take(x, tuple(index.get(l, slice(None)) for l in range(len(tau))))


def oplus(*xs) -> Variable:
    """Direct sum of SO3vec Variables: fragments concatenated l by l (type tau1 + tau2 + ...)."""
    return Oplus.apply(*xs)


def scale(x, s) -> Variable:
    """``x * s`` with s a number or a tensor broadcasting against the batch shape."""
    return Scale.apply(x, s)


def fragment_scale(x, s) -> Variable:
    """Scale fragment k of x by ``s[..., k]`` (s: ``(b..., K)``, real or complex)."""
    return FragmentScale.apply(x, s)


def inp(x, y) -> Variable:
    """Per-fragment inner products ``sum_m conj(x) y``: a tensor Variable ``(b..., K)``."""
    return Inp.apply(x, y)


def norm2(x) -> Variable:
    """Per-fragment squared norms ``sum_m |x|^2`` (real, ``(b..., K)``): rotation invariants."""
    return inp(x, x).real


def norm(x) -> Variable:
    """Per-fragment norms (real, ``(b..., K)``); the gradient is undefined where a norm is 0."""
    return norm2(x) ** 0.5


def mix(x, *W) -> Variable:
    """``x^l @ W[l]`` for every l (the linear part of a layer); W: one matrix Variable per l."""
    return Mix.apply(x, *W)


@deferrable
def so3_mul(x, y) -> Variable:
    """``v * y`` (or ``y * v``) for an SO3vec v: weight mixing when y is a list or dict of per-l
    matrices, or a stacked ``(L+1, n, n_out)`` tensor when every part has n fragments; otherwise
    per-sample scaling by a number or a tensor broadcasting against the batch."""
    if not hasattr(_value(x), "parts"):
        x, y = y, x
    if isinstance(y, (list, tuple)):
        return mix(x, *y)
    if isinstance(y, dict):
        return mix(x, *[y[l] for l in range(len(y))])
    yv, v = _value(y), _value(x)
    if isinstance(yv, torch.Tensor) and yv.dim() == 3 and yv.shape[0] == len(v.tau) and \
            all(n == yv.shape[1] for n in v.tau) and not _batch_shaped(yv, v):
        return mix(x, *[index(y, l) for l in range(yv.shape[0])])
    return scale(x, y)


def _batch_shaped(t: torch.Tensor, v: SO3vec) -> bool:
    try:
        return tuple(torch.broadcast_shapes(t.shape, torch.Size(v.batch))) == tuple(v.batch)
    except RuntimeError:
        return False
