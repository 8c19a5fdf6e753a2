"""Torch twin of the CG product kernels: the CPU path, and in float64 the oracle.

``cg_product(x, y, plan)`` takes packed tensors ``x (B, plan.dim1)``, ``y (B, plan.dim2)`` (complex or
real, see :mod:`so3net.plan` for the layout) and returns ``z (B, plan.dim_out)``. It is written
with torch ops only, so torch autograd differentiates it (to any order).

Per path it honours m = m1 + m2: for every output m and every m2 it gathers the single m1 = m - m2
(a precomputed index table, zero coefficient where m1 is out of range), then contracts over m2 —
with one batched matmul for all-pairs blocks (output fragment i * n2 + j) and an elementwise
product-sum for fragment-paired blocks. No dense Kronecker product over (m1, m2) is formed.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..plan import CGPlan, Path

__all__ = ["cg_product", "cg_product_reference"]


@lru_cache(maxsize=4096)
def _path_tables(plan: CGPlan, index: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Gather tables of one path and its all-pairs flag.

    For every (m_out, m_right) the block has at most S nonzero m_left (S = 1 in the complex basis,
    where m_left is fixed by the selection rule; S <= 2 in the real basis): ``idx (M, M2, S)`` lists
    them and ``coef (M, M2, S)`` their coefficients (0 in unused slots).
    """
    p = plan.paths[index]
    C = plan.coefficients(p)  # [m_left, m_right, m_out]
    M1, M2, M = C.shape
    nz = C != 0
    S = max(1, int(nz.sum(0).max()) if nz.size else 1)
    idx = np.zeros((M, M2, S), dtype=np.int64)
    coef = np.zeros((M, M2, S), dtype=C.dtype)
    for a, b, c in zip(*np.nonzero(C)):
        slot = int(np.count_nonzero(coef[c, b]))
        idx[c, b, slot], coef[c, b, slot] = a, C[a, b, c]
    n1, n2 = plan.tau1[p.l1], plan.tau2[p.l2]
    all_pairs = (len(p.left) == n1 * n2 and p.out == tuple(range(p.out[0], p.out[0] + n1 * n2))
                 and p.left == tuple(np.repeat(np.arange(n1), n2).tolist())
                 and p.right == tuple(np.tile(np.arange(n2), n1).tolist()))
    return idx, coef, all_pairs


@lru_cache(maxsize=4096)
def _fragment_index(plan: CGPlan, index: int, which: str, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(getattr(plan.paths[index], which), dtype=torch.long, device=device)


def _coef_tensor(coef: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    real = like.real.dtype if like.is_complex() else like.dtype
    t = torch.as_tensor(coef, device=like.device)
    return t.to(like.dtype if np.iscomplexobj(coef) else real)


def _part(v: torch.Tensor, offsets: tuple[int, ...], tau: tuple[int, ...], l: int) -> torch.Tensor:
    start = offsets[l]
    return v[:, start:start + (2 * l + 1) * tau[l]].reshape(v.shape[0], 2 * l + 1, tau[l])


def _gather_left(X: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """T[b, m, m2, k] = sum_s coef[m, m2, s] * X[b, idx[m, m2, s], k]."""
    T = X[:, idx[..., 0]] * coef[None, :, :, 0, None]
    for s in range(1, idx.shape[-1]):
        T = T + X[:, idx[..., s]] * coef[None, :, :, s, None]
    return T


def _path_output(plan: CGPlan, index: int, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Block of one path, shape (B, 2l+1, K)."""
    p: Path = plan.paths[index]
    idx, coef, all_pairs = _path_tables(plan, index)
    idx_t = torch.as_tensor(idx, device=X.device)
    coef_t = _coef_tensor(coef, X)
    B = X.shape[0]
    M, M2, _ = idx.shape
    if all_pairs:
        T = _gather_left(X, idx_t, coef_t)                       # (B, M, M2, n1)
        n1, n2 = X.shape[2], Y.shape[2]
        Z = torch.matmul(T.transpose(2, 3).reshape(B, M * n1, M2), Y.to(T.dtype))  # (B, M*n1, n2)
        return Z.reshape(B, M, n1 * n2)
    Xg = X[:, :, _fragment_index(plan, index, "left", X.device)]   # (B, M1, K)
    Yg = Y[:, :, _fragment_index(plan, index, "right", X.device)]  # (B, M2, K)
    T = _gather_left(Xg, idx_t, coef_t)                             # (B, M, M2, K)
    return (T * Yg[:, None].to(T.dtype)).sum(2)


def _check_inputs(x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> None:
    if x.dim() != 2 or x.shape[1] != plan.dim1:
        raise ValueError(f"x must be packed with shape (B, {plan.dim1}) for type {plan.tau1}, got {tuple(x.shape)}")
    if y.dim() != 2 or y.shape[1] != plan.dim2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be packed with shape ({x.shape[0]}, {plan.dim2}) for type {plan.tau2}, "
                         f"got {tuple(y.shape)}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on one device, got {x.device} and {y.device}")
    if x.dtype != y.dtype:
        raise ValueError(f"x and y must have one dtype, got {x.dtype} and {y.dtype}")


def cg_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """Evaluate ``plan`` on packed ``x`` and ``y``; returns packed ``z (B, plan.dim_out)``."""
    _check_inputs(x, y, plan)
    B = x.shape[0]
    if plan.conj_right and y.is_complex():
        y = y.conj()
    blocks: dict[int, list[tuple[Path, torch.Tensor]]] = {}
    for i, p in enumerate(plan.paths):
        X = _part(x, plan.offsets1, plan.tau1, p.l1)
        Y = _part(y, plan.offsets2, plan.tau2, p.l2)
        blocks.setdefault(p.l, []).append((p, _path_output(plan, i, X, Y)))
    parts = []
    for l, n in enumerate(plan.tau_out):
        entries = blocks.get(l, [])
        parts.append(_assemble(entries, B, l, n, x).reshape(B, (2 * l + 1) * n))
    return torch.cat(parts, 1) if parts else x.new_zeros(B, 0)


def _assemble(entries, B: int, l: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """Part l of the output (B, 2l+1, n) from the blocks of its paths."""
    if not entries:
        return like.new_zeros(B, 2 * l + 1, n)
    outs = [p.out for p, _ in entries]
    flat = [o for out in outs for o in out]
    if flat == list(range(n)):  # forward plans: blocks tile the part in order
        return torch.cat([z for _, z in entries], 2)
    result = like.new_zeros(B, 2 * l + 1, n)
    for p, z in entries:
        result = result.index_add(2, torch.as_tensor(p.out, device=like.device), z.to(result.dtype))
    return result


def cg_product_reference(x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """Slow, obviously-correct evaluation (loops over paths and nonzero CG terms): the oracle."""
    _check_inputs(x, y, plan)
    if plan.conj_right and y.is_complex():
        y = y.conj()
    B = x.shape[0]
    dtype = torch.promote_types(x.dtype, torch.complex128 if x.is_complex() else torch.float64)
    z = [torch.zeros(B, 2 * l + 1, n, dtype=dtype) for l, n in enumerate(plan.tau_out)]
    for p in plan.paths:
        X = _part(x, plan.offsets1, plan.tau1, p.l1).to(dtype)
        Y = _part(y, plan.offsets2, plan.tau2, p.l2).to(dtype)
        C = plan.coefficients(p)
        left, right, out = (torch.as_tensor(a) for a in p.arrays())
        for a, b, c in zip(*np.nonzero(C)):
            coef = complex(C[a, b, c]) if np.iscomplexobj(C) else float(C[a, b, c])
            z[p.l][:, c].index_add_(1, out, coef * X[:, a, left] * Y[:, b, right])
    return torch.cat([t.reshape(B, -1) for t in z], 1)
