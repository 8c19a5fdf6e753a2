"""The Clebsch–Gordan product family on ``SO3part``/``SO3vec``: the network's nonlinearity.

For every pair of parts (l1, l2) and every l with |l1 - l2| <= l <= min(l1 + l2, maxl), a pair of
fragments (i, j) gives one output fragment

    z_m = sum_{m1 + m2 = m} <l1 m1; l2 m2 | l m> x_{m1, i} y_{m2, j}

in the complex basis. In the real basis the coefficients are the real tables
``so3net.basis.real_cg_block(l1, l2, l)`` and the same kernels run with real dtypes: for parts in
the real basis (``x = Q_l1 x_c``, ``y = Q_l2 y_c``, see :mod:`so3net.basis`)

    z = (-i)^(l1 + l2 - l) Q_l CG(Q_l1^† x, Q_l2^† y)

i.e. the real-basis components of the complex product times the fixed phase ``(-i)^(l1+l2-l)``,
which makes the output of real inputs real (without it the (l1, l2) -> l block would be imaginary
when l1 + l2 - l is odd). Equivalently, ``x -> (-i)^l Q_l^† x`` maps real-basis products to
complex-basis products of every kind, block by block. Output fragments of part l: blocks (l1, l2) in
lexicographic order, fragment ``i * n2 + j`` inside a block (GElib's order). The products:

- ``CGproduct(x, y)``: all pairs (i, j); type ``x.tau.CGproduct(y.tau, maxl)``.
- ``DiagCGproduct(x, y)``: pairs (i, i) only, fragment i of part l1 of x with fragment i of part
  l2 of y; so it needs ``x.tau == y.tau`` with all nonzero counts equal, e.g. (4, 4, 4) (a block
  where one side has a single fragment broadcasts it).
- ``CGsquare(x)``: the symmetric square — blocks l1 <= l2, and for l1 == l2 only unordered pairs
  i <= j (i < j when l1 + l2 - l is odd, where the i == j fragment vanishes). Each output fragment
  equals the fragment (l1, l2, i, j) of ``CGproduct(x, x)``; nothing is computed twice.

``normalized=False`` (default): the plain CG coefficients above, which preserve norms overall
(``sum_l |z^l|^2 = |x|^2 |y|^2`` per fragment pair over all l) and map unit-variance components
to unit-variance components. ``normalized=True`` multiplies the (l1, l2) -> l block by
``sqrt((2 l1 + 1)(2 l2 + 1) / (2 l + 1))`` so that fragments of unit norm give output fragments of
unit mean-square norm (averaged over input directions). Nothing else is ever rescaled.

Both operands must share basis, dtype and device; batch shapes broadcast. Parts are packed, the
batch flattened, and the plan is evaluated by :func:`so3net.kernels.dispatch.cg_product` — the
result is differentiable by torch autograd. With ``SO3part`` operands the result is an ``SO3vec``
(parts below |l1 - l2| empty), or the ``SO3part`` of degree ``l`` when ``l=`` is given.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..kernels.dispatch import cg_product as _dispatch_cg_product
from ..plan import CGPlan, cg_plan
from ._checks import broadcast_batch, check_degree, check_same_storage
from .part import SO3part
from .sotype import SO3type, check_maxl
from .vec import SO3vec

__all__ = ["CGproduct", "DiagCGproduct", "CGsquare", "product_plan"]


def CGproduct(x, y, maxl: int | None = None, normalized: bool = False, l: int | None = None):
    """Full CG product of two ``SO3vec``s (or ``SO3part``s); see the module docstring."""
    return _product(x, y, "full", maxl, normalized, l, "CGproduct")


def DiagCGproduct(x, y, maxl: int | None = None, normalized: bool = False, l: int | None = None):
    """Diagonal CG product (fragment i with fragment i); the two types must be equal."""
    return _product(x, y, "diag", maxl, normalized, l, "DiagCGproduct")


def CGsquare(x, maxl: int | None = None, normalized: bool = False, l: int | None = None):
    """Symmetric square of ``x`` (unordered fragment pairs only); see the module docstring."""
    return _product(x, x, "square", maxl, normalized, l, "CGsquare")


def product_plan(x, y, kind: str = "full", maxl: int | None = None) -> CGPlan:
    """The compiled plan (:mod:`so3net.plan`) that the product of ``x`` and ``y`` evaluates."""
    return cg_plan(tuple(_as_vec(x, "product_plan").tau), tuple(_as_vec(y, "product_plan").tau),
                   check_maxl(maxl), kind, x.basis)


def _product(x, y, kind: str, maxl, normalized: bool, l, op: str):
    maxl = check_maxl(maxl)
    if l is not None:
        l = _check_output_degree(x, y, check_degree(l), maxl, op)
        maxl = l
    vx, vy = _as_vec(x, op), _as_vec(y, op)
    check_same_storage(vx, vy, op)
    if kind == "diag" and vx.tau.trimmed() != vy.tau.trimmed():
        raise ValueError(f"{op} pairs fragment i of x with fragment i of y, so it needs equal types; "
                         f"got {vx.tau} and {vy.tau}")
    plan = _plan(vx.tau, vy.tau, maxl, kind, vx.basis, op)
    batch = broadcast_batch(vx.batch, vy.batch, op)
    xp = vx.packed().expand(*batch, plan.dim1).reshape(-1, plan.dim1)
    yp = xp if kind == "square" else vy.packed().expand(*batch, plan.dim2).reshape(-1, plan.dim2)
    z = _dispatch_cg_product(xp, yp, plan)
    if normalized:
        z = z * torch.as_tensor(_normalization(plan), device=z.device).to(z.real.dtype)
    out = SO3vec.from_packed(z.reshape(*batch, plan.dim_out), plan.tau_out, basis=vx.basis)
    if l is None:
        return out
    return out[l] if l <= out.maxl else SO3part(z.new_zeros(*batch, 2 * l + 1, 0), vx.basis)


def _plan(tau1, tau2, maxl, kind: str, basis: str, op: str) -> CGPlan:
    try:
        return cg_plan(tuple(tau1), tuple(tau2), maxl, kind, basis)
    except ValueError as err:  # the plan names the offending block; say which product and types
        raise ValueError(f"{op} of types {tau1} and {tau2}: {err}") from None


def _as_vec(x, op: str) -> SO3vec:
    if isinstance(x, SO3vec):
        return x
    if isinstance(x, SO3part):
        parts = {k: x.data.new_zeros(*x.batch, 2 * k + 1, 0) for k in range(x.l)}
        parts[x.l] = x.data
        return SO3vec(parts, basis=x.basis)
    raise TypeError(f"{op} expects SO3vec or SO3part operands, got {type(x).__name__}")


def _check_output_degree(x, y, l: int, maxl, op: str) -> int:
    """``l=`` selects one output part; it must be reachable (and within ``maxl`` if given)."""
    if maxl is not None and l > maxl:
        raise ValueError(f"{op}: l={l} is above maxl={maxl}")
    if isinstance(x, SO3part) and isinstance(y, SO3part):
        lo, hi = abs(x.l - y.l), x.l + y.l
        if not lo <= l <= hi:
            raise ValueError(f"{op}: l={l} is out of range for parts l1={x.l} and l2={y.l}; "
                             f"expected {lo} <= l <= {hi}")
        return l
    top = _as_vec(x, op).maxl + _as_vec(y, op).maxl
    if l > top:
        raise ValueError(f"{op}: l={l} is out of range; the product reaches at most l={top}")
    return l


@lru_cache(maxsize=1024)
def _normalization(plan: CGPlan) -> np.ndarray:
    """Per packed output entry: sqrt((2 l1 + 1)(2 l2 + 1) / (2 l + 1)) of the path that writes it."""
    scale = np.ones(plan.dim_out)
    for p in plan.paths:
        n = plan.tau_out[p.l]
        view = scale[plan.offsets_out[p.l]:plan.offsets_out[p.l] + (2 * p.l + 1) * n].reshape(2 * p.l + 1, n)
        view[:, list(p.out)] = math.sqrt((2 * p.l1 + 1) * (2 * p.l2 + 1) / (2 * p.l + 1))
    return scale
