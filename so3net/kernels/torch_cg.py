"""Torch twin of the CG product kernels: the CPU path, and in float64 the oracle.

Public functions (same signatures as the Triton launchers in :mod:`.triton_ops`), on packed
tensors (layout of :mod:`so3net.plan`), differentiable to any order through :mod:`.autograd`:

- ``cg_product(x, y, plan)`` -> ``z (B, plan.dim_out)`` for ``x (B, plan.dim1)``, ``y (B, plan.dim2)``;
- ``weighted_product(x, y, plan, weights=None)``: the same with real per-sample weights
  ``(B, plan.num_weights)`` (the "uvu" channel-wise product for a ``diag`` plan);
- ``message_passing_product(edge, node, src, dst, plan, weights=None, num_nodes=None)``:
  ``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]], weights[e])``.

The engine functions ``bilinear`` and ``weight_grad`` (see :mod:`.autograd`) evaluate each path
with :mod:`.torch_paths` — vectorised gathers and batched matmuls, no Python loop over batch rows
or fragments. A row-mapped product gathers its operand rows, evaluates row-wise and index-adds
the result into the output rows (the fused Triton kernel does this without the edge-sized
intermediate). ``cg_product_reference`` loops over paths and nonzero CG terms: the oracle.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..plan import CGPlan
from . import memory
from .autograd import message_product, product
from .checks import check_operands, check_weights
from .rows import RowMap
from .torch_blocks import block_executor, gradient_pair, pair_executors
from .torch_paths import entry_executor, path_executor

__all__ = ["cg_product", "weighted_product", "message_passing_product", "cg_product_reference",
           "bilinear", "bilinear_pair", "weight_grad", "Engine", "TORCH", "NATIVE"]


def _part(v: torch.Tensor, offsets: tuple[int, ...], tau: tuple[int, ...], l: int) -> torch.Tensor:
    start = offsets[l]
    return v[:, start:start + (2 * l + 1) * tau[l]].unflatten(1, (2 * l + 1, tau[l]))


def _accumulates(plan: CGPlan) -> bool:
    """Whether the output must start from zeros (uncovered entries or summed contributions)."""
    single = all(len(s.paths) == 1 for s in plan.segments)
    return not (plan.covers_output and single and all(g[1].shape[1] == 1 for g in plan.path_groups))


def _target(cols: np.ndarray, device: torch.device):
    if len(cols) and (cols == cols[0] + np.arange(len(cols))).all():
        return slice(int(cols[0]), int(cols[0]) + len(cols))
    return torch.as_tensor(cols, device=device)


@lru_cache(maxsize=1024)
def _path_executors(plan: CGPlan, device: torch.device, real: torch.dtype, weighted: bool):
    """Per path ``(l1, l2, l, run, target)`` (see :func:`.torch_paths.path_executor`) and whether
    the output accumulates; everything index- or coefficient-like is built here, once."""
    steps = []
    for i, p in enumerate(plan.paths):
        run, cols = path_executor(plan, i, device, real, weighted)
        steps.append((p.l1, p.l2, p.l, run, _target(cols, device)))
    return _accumulates(plan), tuple(steps)


def _real(t: torch.Tensor) -> torch.dtype:
    return t.real.dtype if t.is_complex() else t.dtype


def _right(plan: CGPlan, b: torch.Tensor) -> torch.Tensor:
    """The right operand as the plan reads it: ``conj(b)`` when ``plan.conj_right``."""
    return b.conj() if plan.conj_right and b.is_complex() else b


def _out(z: torch.Tensor, conj_out: bool) -> torch.Tensor:
    return z.conj_physical_() if conj_out and z.is_complex() else z


def _rowwise(plan: CGPlan, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None,
             mode: str | None = None) -> torch.Tensor:
    n = a.shape[0]
    b = _right(plan, b)
    whole = block_executor(plan, a.device, a.dtype, mode) if w is None and n else None
    if whole is not None:
        return whole(a, b)
    accumulate, steps = _path_executors(plan, a.device, _real(a), w is not None)
    z = memory.empty(n, plan.dim_out, dtype=a.dtype, device=a.device)
    if n == 0:
        return z
    if accumulate:
        z.zero_()
    cache: dict = {}                     # operands shared by the paths of this call
    for l1, l2, l, run, target in steps:
        A, B = _part(a, plan.offsets1, plan.tau1, l1), _part(b, plan.offsets2, plan.tau2, l2)
        part = _part(z, plan.offsets_out, plan.tau_out, l)
        if isinstance(target, slice) and hasattr(run, "into"):
            run.into(A, B, part[:, :, target], accumulate, cache)
            continue
        Z = run(A, B, w, cache) if hasattr(run, "shares_cache") else run(A, B, w)
        if isinstance(target, slice):
            part[:, :, target].add_(Z) if accumulate else part[:, :, target].copy_(Z)
        else:
            part.index_add_(2, target, Z)
    return z


def bilinear(plan: CGPlan, rows: RowMap | None, a, b, w, conj_out: bool, mode: str | None = None) -> torch.Tensor:
    """Engine evaluation ``o(P(a, c(b), w))`` (see :mod:`.autograd`); ``mode``: the CPU kernels
    (:class:`Engine`)."""
    if rows is None:
        z = _rowwise(plan, a, b, w, mode)
    else:
        msgs = _rowwise(plan, a.index_select(0, rows.left), b.index_select(0, rows.right),
                        None if w is None else w.index_select(0, rows.weight), mode)
        z = memory.empty(rows.n_out, plan.dim_out, dtype=msgs.dtype, device=msgs.device).zero_()
        z.index_add_(0, rows.out, msgs)
    return _out(z, conj_out)


def bilinear_pair(plan_a: CGPlan, conj_a: bool, plan_b: CGPlan, conj_b: bool, gz, b, a, mode: str | None = None):
    """``(bilinear(plan_a, None, gz, b, None, conj_a), bilinear(plan_b, None, gz, a, None, conj_b))``:
    the two input gradients of a product. When the product has whole-plan executors both come from
    one pass over ``gz`` (:func:`.torch_blocks.gradient_pair`)."""
    pair = pair_executors(plan_a, plan_b, gz.device, gz.dtype, mode) if gz.shape[0] else None
    if pair is None:
        return (bilinear(plan_a, None, gz, b, None, conj_a, mode),
                bilinear(plan_b, None, gz, a, None, conj_b, mode))
    ga, gb = gradient_pair(*pair, gz, _right(plan_a, b), _right(plan_b, a))
    return _out(ga, conj_a), _out(gb, conj_b)


@lru_cache(maxsize=1024)
def _weight_executors(plan: CGPlan, device: torch.device, real: torch.dtype):
    return tuple((p.l1, p.l2, p.l, entry_executor(plan, i, p.left, p.right, device, real),
                  torch.as_tensor(p.out, device=device), plan.weight_offsets[i], p.size)
                 for i, p in enumerate(plan.paths))


def _rowwise_weight_grad(plan: CGPlan, g, a, b, conj_g: bool) -> torch.Tensor:
    b = _right(plan, b)
    gw = torch.empty(a.shape[0], plan.num_weights, dtype=_real(a), device=a.device)
    if a.shape[0] == 0:
        return gw
    for l1, l2, l, entries, out, off, size in _weight_executors(plan, a.device, _real(a)):
        U = entries(_part(a, plan.offsets1, plan.tau1, l1), _part(b, plan.offsets2, plan.tau2, l2))
        G = _part(g, plan.offsets_out, plan.tau_out, l).index_select(2, out)
        if G.is_complex():
            prod = G.real * U.real + (-G.imag if conj_g else G.imag) * U.imag
        else:
            prod = G * U
        gw[:, off:off + size] = prod.sum(1)
    return gw


def weight_grad(plan: CGPlan, rows: RowMap | None, g, a, b, conj_g: bool) -> torch.Tensor:
    """Engine evaluation of the weight gradient ``Re sum_m o(g) conj(u)`` (see :mod:`.autograd`)."""
    if rows is None:
        return _rowwise_weight_grad(plan, g, a, b, conj_g)
    per = _rowwise_weight_grad(plan, g.index_select(0, rows.out), a.index_select(0, rows.left),
                               b.index_select(0, rows.right), conj_g)
    return per.new_zeros(rows.n_weight, plan.num_weights).index_add_(0, rows.weight, per)


# ---------------------------------------------------------------------------------- engines, public API
class Engine:
    """The torch twin as an engine (:mod:`.autograd`) with its CPU kernels fixed by ``mode``:
    ``"native"`` (the compiled kernels of :mod:`.native` evaluate every plan they cover; raises when
    they cannot be built), ``"torch"`` (torch ops only), or ``None`` (``SO3NET_CPU_KERNELS``, read at
    each call). The backward passes of a product run with the engine of its forward."""

    def __init__(self, name: str, mode: str | None):
        self.name, self.mode = name, mode

    def __repr__(self) -> str:
        return f"torch_cg.Engine({self.name!r})"

    def bilinear(self, plan, rows, a, b, w, conj_out):
        return bilinear(plan, rows, a, b, w, conj_out, self.mode)

    def bilinear_pair(self, plan_a, conj_a, plan_b, conj_b, gz, b, a):
        return bilinear_pair(plan_a, conj_a, plan_b, conj_b, gz, b, a, self.mode)

    def weight_grad(self, plan, rows, g, a, b, conj_g):
        return weight_grad(plan, rows, g, a, b, conj_g)

    def cg_product(self, x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
        """Evaluate ``plan`` on packed ``x`` and ``y``; returns packed ``z (B, plan.dim_out)``."""
        return product(self, plan, x, y)

    def weighted_product(self, x: torch.Tensor, y: torch.Tensor, plan: CGPlan, weights: torch.Tensor | None = None):
        """``plan`` with real per-sample weights ``(B, plan.num_weights)`` (entry k of path p uses
        column ``plan.weight_offsets[p] + k``); ``weights=None`` is :meth:`cg_product`."""
        return product(self, plan, x, y, weights)

    def message_passing_product(self, edge: torch.Tensor, node: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                                plan: CGPlan, weights: torch.Tensor | None = None, num_nodes: int | None = None):
        """``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]], weights[e])``, packed
        ``(num_nodes, plan.dim_out)``; ``num_nodes`` defaults to ``node.shape[0]``."""
        return message_product(self, plan, edge, node, src, dst, weights, num_nodes)


TORCH = Engine("torch", "torch")            # backend "torch": torch ops on any device
NATIVE = Engine("native", "native")         # backend "native": compiled CPU kernels
_ENGINE = Engine("environment", None)       # the module functions below: SO3NET_CPU_KERNELS decides

cg_product = _ENGINE.cg_product
weighted_product = _ENGINE.weighted_product
message_passing_product = _ENGINE.message_passing_product


def cg_product_reference(x: torch.Tensor, y: torch.Tensor, plan: CGPlan,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """Slow, obviously-correct evaluation (loops over paths and nonzero CG terms): the oracle.
    Computes in float64/complex128; differentiable by torch autograd."""
    check_operands(x, y, plan, None)
    check_weights(weights, x, plan, x.shape[0])
    if plan.conj_right and y.is_complex():
        y = y.conj()
    B = x.shape[0]
    dtype = torch.complex128 if x.is_complex() else torch.float64
    z = [torch.zeros(B, 2 * l + 1, n, dtype=dtype, device=x.device) for l, n in enumerate(plan.tau_out)]
    for i, p in enumerate(plan.paths):
        X = _part(x, plan.offsets1, plan.tau1, p.l1).to(dtype)
        Y = _part(y, plan.offsets2, plan.tau2, p.l2).to(dtype)
        left, right, out = (torch.as_tensor(t, device=x.device) for t in p.arrays())
        w = 1.0
        if weights is not None:
            off = plan.weight_offsets[i]
            w = weights[:, off:off + p.size].to(torch.float64)
        for m1, m2, m, c in zip(*plan.path_terms[i]):
            z[p.l][:, m].index_add_(1, out, float(c) * w * X[:, m1, left] * Y[:, m2, right])
    return torch.cat([t.reshape(B, t.shape[1] * t.shape[2]) for t in z], 1) if z else x.new_zeros(B, 0, dtype=dtype)
