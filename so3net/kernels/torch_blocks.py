"""Whole-plan evaluation of the full product on uniform types: a few batched GEMMs per call.

For a ``full`` plan whose operand types are uniform (every part of x has n1 fragments, every part
of y has n2) the packed output is a sequence of J row-matrices, one per (part l, row m, block
(l1, l2)), each an ``(n1, n2)`` matrix stored row-major in packed order::

    Z[b, j] = sum_k coef[j, k] * X[b, P1[j, k], :] (outer) Y[b, P2[j, k], :]

where ``X (B, R1, n1)`` and ``Y (B, R2, n2)`` are the packed operands viewed row by row
(``R = sum_l (2l+1)`` rows) and k runs over the nonzero CG terms of row j (m1 + m2 = m in the
complex basis). :class:`BlockExecutor` gathers these terms into the dense (R2 J, R1) coefficient
matrix ``C[(q, j), p]`` and evaluates the product and both of its backward plans as two batched
GEMMs each (see its docstring); the last GEMM of the forward writes the packed output in place.
The dense GEMMs also multiply C's structural zeros: :attr:`_Layout.redundancy` is the ratio of
their multiply-adds to the nonzero ones, and the GEMM evaluation is used only up to
``MAX_REDUNDANCY`` (about 6 for l <= 2 with 16 fragments, 17 for l <= 3 with 8; l = 4 with 4
fragments is 48 and goes path by path, as do all larger l with few fragments). CPU tensors take
the compiled, sparse-exact kernels of :mod:`.native` instead (:class:`CompiledExecutor`: full
products of any types, the symmetric square, channel-wise products, any redundancy) unless
``SO3NET_CPU_KERNELS=torch``.

:func:`block_executor` recognises the forward plan and both of its backward plans (by rebuilding
the forward plan from a backward one) and returns ``None`` for anything else; the caller then
evaluates path by path (:mod:`.torch_paths`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..plan import CGPlan, Path
from . import memory, native

__all__ = ["block_executor", "BlockExecutor", "pair_executors", "gradient_pair"]

MAX_REDUNDANCY = 24.0                            # dense GEMM multiply-adds / nonzero ones
_CHUNK_BYTES = 1 << 20                           # per-chunk intermediate: stays in L2/L3
_GRAD_X, _GRAD_Y = (2, 1, 0), (2, 0, 1)          # coef_perm of the backward plans of a forward plan


@dataclass(frozen=True)
class _Layout:
    """The row-matrix layout of a uniform full product (numpy tables; see the module docstring)."""
    n1: int
    n2: int
    rows1: int
    rows2: int
    P1: np.ndarray        # (J, K) operand rows of x
    P2: np.ndarray        # (J, K) operand rows of y
    coef: np.ndarray      # (J, K) float64, zero on padding

    @property
    def redundancy(self) -> float:
        """Multiply-adds of the dense GEMMs of a forward pass over those of the nonzero terms."""
        J = self.coef.shape[0]
        dense = self.rows2 * J * self.n1 * (self.rows1 + self.n2)
        return dense / max(1, int(np.count_nonzero(self.coef)) * self.n1 * self.n2)


@lru_cache(maxsize=256)
def _layout(plan: CGPlan) -> _Layout | None:
    """The layout of a forward ``full`` plan (its row-matrices, :func:`.native.layout._rows`, with
    operand rows for offsets), or ``None`` when its types are not uniform."""
    if plan.kind != "full":
        return None
    n1s, n2s = set(plan.tau1), set(plan.tau2)
    if len(n1s) != 1 or len(n2s) != 1 or 0 in n1s | n2s:
        return None
    n1, n2 = n1s.pop(), n2s.pop()
    rows = native.layout._rows(plan)
    if rows is None or any(r[4] >= 0 for r in rows):
        return None
    K = max(len(r[3]) for r in rows)
    P1, P2, coef = (np.zeros((len(rows), K), dtype=t) for t in (np.int64, np.int64, np.float64))
    for j, (_, _, _, terms, _) in enumerate(rows):
        for k, (xo, yo, c) in enumerate(terms):
            P1[j, k], P2[j, k], coef[j, k] = xo // n1, yo // n2, c
    return _Layout(n1, n2, plan.dim1 // n1, plan.dim2 // n2, P1, P2, coef)


def _compiled_tables(forward: CGPlan):
    """The compiled kernels' tables of a forward plan, or ``None``; shared by the plan's three
    roles (the forward plan rebuilt from a backward plan may differ in ``kind`` and ``maxl`` only)."""
    return _tables_of(CGPlan("full", forward.tau1, forward.tau2, forward.tau_out, len(forward.tau_out) - 1,
                             forward.basis, forward.paths))


@lru_cache(maxsize=256)
def _tables_of(normalised: CGPlan):
    return native.tables(normalised)


def _forward_of(plan: CGPlan) -> tuple[CGPlan, str] | None:
    """``(forward plan, role)``: role ``"z"`` for a forward plan, ``"x"``/``"y"`` for its backward
    plans (see :attr:`so3net.plan.CGPlan.backward_plans`, whose paths are rebuilt here)."""
    if plan.kind in ("full", "square", "diag") or (plan.kind == "grad" and plan.coef_perm == (0, 1, 2)):
        return plan, "z"            # a second-order plan with the forward's axes is a forward product
    if plan.kind != "grad" or plan.coef_perm not in (_GRAD_X, _GRAD_Y):
        return None
    if plan.coef_perm == _GRAD_X:     # path (l, l2 -> l1): left = out_f, right = right_f, out = left_f
        paths = tuple(Path(p.l, p.l2, p.l1, p.out, p.right, p.left, p.connection) for p in plan.paths)
        taus, role = (plan.tau_out, plan.tau2, plan.tau1), "x"
    else:                             # path (l, l1 -> l2): left = out_f, right = left_f, out = right_f
        paths = tuple(Path(p.l2, p.l, p.l1, p.right, p.out, p.left, p.connection) for p in plan.paths)
        taus, role = (plan.tau2, plan.tau_out, plan.tau1), "y"
    forward = CGPlan("full", *taus, len(taus[2]) - 1, plan.basis, paths)
    return forward, role


class CompiledExecutor:
    """One role (``z``, ``x`` or ``y``) of a product on CPU tensors, by the compiled kernels of
    :mod:`.native` (sparse-exact; the plans :func:`.native.tables` takes, any dtype)."""

    def __init__(self, tables: native.Tables, role: str, forward: CGPlan, lib):
        self.tables, self.role, self.forward, self.lib = tables, role, forward, lib

    def width(self) -> int:
        return {"z": self.tables.dim_out, "x": self.tables.dim1, "y": self.tables.dim2}[self.role]

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The plan's output for packed ``a`` and ``b`` (conj already applied by the caller)."""
        n = a.shape[0]
        if self.role == "z":          # a = x, b = y
            out = memory.empty(n, self.width(), dtype=a.dtype, device=a.device)
            return native.forward(self.lib, self.tables, a, b, out)
        grad = torch.empty(n, self.width(), dtype=a.dtype, device=a.device)
        if self.role == "x":          # a = gz, b = y
            native.backward(self.lib, self.tables, a, None, b, grad, None)
        else:                         # a = gz, b = x
            native.backward(self.lib, self.tables, a, b, None, None, grad)
        return grad


class BlockExecutor:
    """Evaluation of one role (``z``, ``x`` or ``y``) of a uniform full product on one device and
    real dtype, as two batched GEMMs per call with the (R2 J, R1) coefficient matrix
    ``C[(q, j), p] = sum_k coef[j, k] [P1[j, k] = p] [P2[j, k] = q]`` (built once)::

        T[b] = C @ X[b]                    (R2 J, n1), rows (q, j): m1 contracted first
        z:  Z[b]  = T[b]^T @ Y[b]          T[b] viewed (R2, J n1): rows (j, c1) = packed order
        x:  gX[b] = C^T @ (Y[b] @ G[b]^T)  G[b] viewed (J n1, n2)
        y:  gY[b] = T[b] @ G[b]

    Only the operand-sized T is an intermediate; the product is written once, in place, by the
    last GEMM."""

    def __init__(self, layout: _Layout, role: str, forward: CGPlan, device: torch.device, real: torch.dtype):
        self.layout, self.role, self.forward = layout, role, forward
        J, K = layout.coef.shape
        self.J = J
        C = np.zeros((layout.rows2, J, layout.rows1))
        np.add.at(C, (layout.P2.reshape(-1), np.repeat(np.arange(J), K), layout.P1.reshape(-1)),
                  layout.coef.reshape(-1))
        C = C.reshape(layout.rows2 * J, layout.rows1)
        self._C = torch.as_tensor(C.T.copy() if role == "x" else C, device=device, dtype=real)

    def width(self) -> int:
        L = self.layout
        return {"z": L.n2 * self.J * L.n1, "x": L.rows1 * L.n1, "y": L.rows2 * L.n2}[self.role]

    def step(self, dtype: torch.dtype) -> int:
        """Samples per chunk: the intermediate of a chunk stays in cache (about 1 MB)."""
        L = self.layout
        return max(1, _CHUNK_BYTES // (L.rows2 * self.J * L.n1 * dtype.itemsize))

    def scratch(self, n: int, like: torch.Tensor) -> torch.Tensor:
        L = self.layout
        return torch.empty(min(n, self.step(like.dtype)), L.rows2 * self.J, L.n1, dtype=like.dtype,
                           device=like.device)

    def _apply(self, M: torch.Tensor, out: torch.Tensor) -> None:
        """``out = C @ M`` batched; the real coefficients act on the real and imaginary planes of a
        complex ``M`` by one real GEMM (half the work of a complex GEMM)."""
        if not M.is_complex():
            torch.matmul(self._C, M, out=out)
            return
        planes = torch.view_as_real(M.resolve_conj()).flatten(-2)
        torch.matmul(self._C, planes, out=torch.view_as_real(out).flatten(-2))

    def chunk(self, a: torch.Tensor, b: torch.Tensor, T: torch.Tensor, dst: torch.Tensor) -> None:
        """Rows ``a``, ``b`` of one chunk into ``dst`` (k, width), with scratch ``T``."""
        L, J, k = self.layout, self.J, a.shape[0]
        if self.role == "z":          # a = x, b = y
            self._apply(a.reshape(k, L.rows1, L.n1), T)
            torch.bmm(T.view(k, L.rows2, J * L.n1).transpose(1, 2), b.reshape(k, L.rows2, L.n2),
                      out=dst.view(k, J * L.n1, L.n2))
            return
        G = a.reshape(k, J * L.n1, L.n2)
        if self.role == "x":          # a = gz, b = y
            torch.bmm(b.reshape(k, L.rows2, L.n2), G.transpose(1, 2), out=T.view(k, L.rows2, J * L.n1))
            self._apply(T, dst.view(k, L.rows1, L.n1))
        else:                         # a = gz, b = x
            self._apply(b.reshape(k, L.rows1, L.n1), T)
            torch.bmm(T.view(k, L.rows2, J * L.n1), G, out=dst.view(k, L.rows2, L.n2))

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The plan's output for packed ``a`` and ``b`` (conj already applied by the caller)."""
        n = a.shape[0]
        out = memory.empty(n, self.width(), dtype=a.dtype, device=a.device)
        T = self.scratch(n, a)
        for rows in _chunks(n, self.step(a.dtype)):
            self.chunk(a[rows], b[rows], T[:rows.stop - rows.start], out[rows])
        return out


def _chunks(n: int, step: int):
    """Slices of ``step`` rows covering ``range(n)``."""
    return (slice(s, min(n, s + step)) for s in range(0, n, step))


def gradient_pair(px, py, gz: torch.Tensor, y: torch.Tensor, x: torch.Tensor):
    """Both input gradients ``(px(gz, y), py(gz, x))`` of one product (two :class:`CompiledExecutor`s
    or two :class:`BlockExecutor`s) in one pass over ``gz`` (the largest tensor): one kernel call, or
    chunk by chunk."""
    n = gz.shape[0]
    gx = torch.empty(n, px.width(), dtype=gz.dtype, device=gz.device)
    gy = torch.empty(n, py.width(), dtype=gz.dtype, device=gz.device)
    if isinstance(px, CompiledExecutor):
        native.backward(px.lib, px.tables, gz, x, y, gx, gy)
        return gx, gy
    Tx, Ty = px.scratch(n, gz), py.scratch(n, gz)
    for rows in _chunks(n, px.step(gz.dtype)):
        k = rows.stop - rows.start
        px.chunk(gz[rows], y[rows], Tx[:k], gx[rows])
        py.chunk(gz[rows], x[rows], Ty[:k], gy[rows])
    return gx, gy


def block_executor(plan: CGPlan, device: torch.device, dtype: torch.dtype, mode: str | None = None):
    """The whole-plan executor of ``plan`` for tensors of ``dtype`` on ``device`` if it is a product
    or one of its backward plans: a :class:`CompiledExecutor` on the CPU when the compiled kernels
    are in force (``mode``, default the environment's :func:`.native.mode`) and take it, a
    :class:`BlockExecutor` for uniform full products, else ``None``."""
    return _block_executor(plan, device, dtype, mode or native.mode())


@lru_cache(maxsize=1024)
def _block_executor(plan: CGPlan, device: torch.device, dtype: torch.dtype, mode: str):
    found = _forward_of(plan)
    if found is None:
        return None
    forward, role = found
    lib = native.library(mode) if device.type == "cpu" and mode != "torch" else None
    if lib is not None:
        tables = _compiled_tables(forward)
        if tables is not None:
            return CompiledExecutor(tables, role, forward, lib)
    layout = _layout(forward)
    if layout is None or layout.redundancy > MAX_REDUNDANCY:
        return None
    real = dtype.to_real() if dtype.is_complex else dtype
    return BlockExecutor(layout, role, forward, device, real)


def pair_executors(plan_x: CGPlan, plan_y: CGPlan, device: torch.device, dtype: torch.dtype,
                  mode: str | None = None):
    """``(px, py)`` when ``plan_x``/``plan_y`` are the two backward plans of one product with a
    whole-plan executor (then :func:`gradient_pair` applies), else ``None``."""
    return _pair_executors(plan_x, plan_y, device, dtype, mode or native.mode())


@lru_cache(maxsize=1024)
def _pair_executors(plan_x: CGPlan, plan_y: CGPlan, device: torch.device, dtype: torch.dtype, mode: str):
    px, py = block_executor(plan_x, device, dtype, mode), block_executor(plan_y, device, dtype, mode)
    if px is None or py is None or (px.role, py.role) != ("x", "y") or px.forward != py.forward \
            or type(px) is not type(py):
        return None
    return px, py
