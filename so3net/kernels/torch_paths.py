"""Per-path evaluation for the torch twin: one path of a plan on one batch of packed operands.

Every path (see :mod:`so3net.plan`) computes ``Z[b, m, g] = sum_r sum_{m1, m2} C[m1, m2, m]
A[b, m1, left[g, r]] B[b, m2, right[g, r]]`` over its grouped entries. Its structure picks the
evaluation; all are vectorised over batch and fragments, none forms a dense Kronecker product:

- ``outer`` (R = 1, all pairs, the forward full product): ``T = C·A`` contracts m1 (m1 = m - m2
  in the complex basis), then one batched real matmul per path over m2, with complex numbers as
  real/imaginary planes (``[Tr Ti] @ [[Br Bi], [-Bi Br]]``) so the tiny m2 contraction is a real
  GEMM writing interleaved complex output;
- ``contract`` (R > 1 and one operand a contiguous (G, R) or (R, G) block, the other the same
  R-vector for every g: the backward of the full product): a batched matmul over r per block m,
  then the small (m_block, m_vec) -> m contraction with the dense coefficient block;
- ``zip`` (R = 1, fragment-paired: diag products, broadcasts): gathers of the paired fragments,
  products of the nonzero (m1, m2) terms and their sum into m by a (M, T) matrix;
- ``generic`` (anything else): the zip evaluation over the raw entries, scatter-added by the
  caller.

Operands arrive with conj already applied; coefficients are real in both bases.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..plan import CGPlan

__all__ = ["path_structure", "path_executor", "entry_executor"]


@lru_cache(maxsize=8192)
def path_structure(plan: CGPlan, index: int) -> tuple:
    """``("outer",)``, ``("zip",)``, ``("generic",)`` or ``("contract", block_side, orient, base)``
    with block_side ``"left"``/``"right"`` and orient ``"rows"`` ((G, R) block) or ``"cols"``."""
    p = plan.paths[index]
    out, left, right, _ = plan.path_groups[index]
    G, R = left.shape
    if R == 1:
        nL, nR = plan.tau1[p.l1], plan.tau2[p.l2]
        g = np.arange(G)
        if G == nL * nR and (left[:, 0] == g // nR).all() and (right[:, 0] == g % nR).all():
            return ("outer",)
        return ("zip",)
    if G and (left >= 0).all():
        vec = np.broadcast_to(np.arange(R), (G, R))
        for side, block, other in (("left", left, right), ("right", right, left)):
            if not (other == vec).all():
                continue
            base = int(block[0, 0])
            if (block == base + np.arange(G * R).reshape(G, R)).all():
                return ("contract", side, "rows", base)
            if (block == base + np.arange(G * R).reshape(R, G).T).all():
                return ("contract", side, "cols", base)
    return ("generic",)


def _dense(plan: CGPlan, index: int) -> np.ndarray:
    m1, m2, m, c = plan.path_terms[index]
    p = plan.paths[index]
    C = np.zeros((2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l + 1))
    C[m1, m2, m] = c
    return C


def _index(values: np.ndarray, device: torch.device):
    """A gather index for fragment indices: a slice when they are 0..n-1, else a tensor."""
    values = np.asarray(values, dtype=np.int64)
    if (values == np.arange(len(values))).all():
        return slice(0, len(values))
    return torch.as_tensor(values, device=device)


def _gather(X: torch.Tensor, idx) -> torch.Tensor:
    return X[:, :, idx] if isinstance(idx, slice) else X.index_select(2, idx)


def entry_executor(plan: CGPlan, index: int, left, right, device: torch.device, real: torch.dtype):
    """``U(A, B)[b, m, k] = sum_{m1, m2} C[m1, m2, m] A[b, m1, left[k]] B[b, m2, right[k]]``."""
    m1, m2, m, c = plan.path_terms[index]
    S = np.zeros((2 * plan.paths[index].l + 1, len(c)))
    S[m, np.arange(len(c))] = c
    m1, m2 = torch.as_tensor(m1, device=device), torch.as_tensor(m2, device=device)
    S = torch.as_tensor(S, device=device, dtype=real)
    li, ri = _index(left, device), _index(right, device)

    def run(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        P = _gather(A, li).index_select(1, m1) * _gather(B, ri).index_select(1, m2)   # (n, T, K)
        return torch.matmul(S.to(P.dtype), P)                                         # (n, M, K)
    return run


def _planes_rhs(Y: torch.Tensor, interleaved: bool = True) -> torch.Tensor:
    """``[[Yr, Yi], [-Yi, Yr]]`` as a real (n, 2K, 2N) matrix for complex ``Y (n, K, N)``, columns
    (j, c) interleaved like ``view_as_real``; rows (k, s) when ``interleaved`` (else (s, k)), with
    s = 0 for the real and 1 for the imaginary part of the left factor. Then
    ``view_as_real(L) @ rhs = view_as_real(L @ Y)`` for complex ``L (n, M, K)`` whose real view
    has its columns in the same (k, s) order."""
    n, K, N = Y.shape
    planes = torch.view_as_real(Y.resolve_conj())
    rhs = torch.empty(n, K, 2, N, 2, dtype=planes.dtype, device=Y.device)
    rhs[:, :, 0] = planes
    rhs[:, :, 1, :, 0] = planes[..., 1]
    rhs[:, :, 1, :, 0].neg_()
    rhs[:, :, 1, :, 1] = planes[..., 0]
    if not interleaved:
        rhs = rhs.transpose(1, 2).contiguous()
    return rhs.view(n, 2 * K, 2 * N)


def _workspace(cache: dict, numel: int, dtype, device) -> torch.Tensor:
    """A flat scratch buffer of at least ``numel`` elements, shared by the paths of one call."""
    key = ("workspace", dtype)
    if key not in cache or cache[key].numel() < numel:
        cache[key] = torch.empty(numel, dtype=dtype, device=device)
    return cache[key][:numel]


def _outer_executor(plan: CGPlan, index: int, device, real):
    M1, M2, M = (2 * l + 1 for l in (plan.paths[index].l1, plan.paths[index].l2, plan.paths[index].l))
    dense = _dense(plan, index)
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device, dtype=real)  # noqa: E731
    m2_of = [np.flatnonzero(dense[:, :, m].any(0)) for m in range(M)]
    single = all(len(q) == 1 for q in m2_of)          # l1 = 0 or l2 = 0: one m2 per m
    if single:
        sel = [int(q[0]) for q in m2_of]
        coef = as_t(dense[:, sel, np.arange(M)])                               # (M1, M)
        sel = torch.as_tensor(sel, device=device)
    else:
        coef = as_t(dense.transpose(0, 2, 1).reshape(M1, M * M2))             # columns (m, m2)

    def run_into(A: torch.Tensor, B: torch.Tensor, target: torch.Tensor, accumulate: bool,
                 cache: dict | None = None) -> None:
        """Write the block into ``target (n, M, nL * nR)`` (a view of the output). With
        ``T[b, m, i, m2] = sum_m1 C[m1, m2, m] A[b, m1, i]`` (one small GEMM): when every m has a
        single m2, one pointwise outer product written in place; else one batched GEMM
        ``T @ B`` (complex numbers as real planes, columns (s, m2)) into a scratch buffer shared
        by the call's paths, then copied (GEMMs cannot write strided blocks)."""
        n, nL, nR = A.shape[0], A.shape[2], B.shape[2]
        cache = {} if cache is None else cache
        if single:
            u = torch.einsum("bpi,pm->bmi", A, coef.to(A.dtype))[:, :, :, None]
            v = B.index_select(1, sel)[:, :, None, :]
            dest = target.unflatten(2, (nL, nR))
            dest.addcmul_(u, v) if accumulate else torch.mul(u, v, out=dest)
            return
        cplx, k = A.is_complex(), 2 if A.is_complex() else 1
        rows = (torch.view_as_real(A.resolve_conj()).permute(0, 2, 3, 1) if cplx else A.transpose(1, 2))
        T = (rows.reshape(-1, M1) @ coef).view(n, nL, k, M, M2).permute(0, 3, 1, 2, 4).reshape(n, M * nL, k * M2)
        key = ("outer rhs", B.data_ptr(), tuple(B.shape), tuple(B.stride()), B.is_conj())
        if key not in cache:
            cache[key] = _planes_rhs(B, interleaved=False) if cplx else B
        rhs = cache[key]
        buf = _workspace(cache, n * M * nL * k * nR, rhs.dtype, rhs.device).view(n, M * nL, k * nR)
        torch.bmm(T, rhs, out=buf)
        out = (torch.view_as_complex(buf.view(n, M * nL, nR, 2)) if cplx else buf).view(n, M, nL * nR)
        target.add_(out) if accumulate else target.copy_(out)

    def run(A: torch.Tensor, B: torch.Tensor, w, cache: dict | None = None) -> torch.Tensor:
        out = torch.empty(A.shape[0], M, A.shape[2] * B.shape[2], dtype=A.dtype, device=A.device)
        run_into(A, B, out, False, cache)
        return out

    run.into = run_into
    run.shares_cache = True
    return run


def _contract_executor(plan: CGPlan, index: int, device, real, side: str, orient: str, base: int):
    """Contraction of a contiguous (G, R) or (R, G) block of one operand with the same R-vector of
    the other. Per block m, the vector is contracted with that m's coefficients (a small GEMM on
    operands shared by every path of the call, see ``cache``), then one batched GEMM reads the
    block in place and accumulates into a small (G, M) result. Complex numbers as real planes."""
    G, R = plan.path_groups[index][1].shape
    dense = _dense(plan, index)
    if side == "right":
        dense = dense.transpose(1, 0, 2)                                        # [m_block, m_vec, m]
    Mb, Mv, M = dense.shape
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device, dtype=real)  # noqa: E731
    rows_coef = as_t(dense.transpose(1, 0, 2).reshape(Mv, Mb * M))                       # (Mv, (mb, m))
    rows_coef2 = as_t(np.einsum("pvm,st->vspmt", dense, np.eye(2)).reshape(2 * Mv, Mb * 2 * M))
    cols_coef = as_t(dense.transpose(0, 2, 1).reshape(Mb * M, Mv))                       # ((mb, m), Mv)

    def run(A: torch.Tensor, B: torch.Tensor, w, cache: dict | None = None) -> torch.Tensor:
        block, vec = (A, B) if side == "left" else (B, A)
        vec = vec[:, :, :R]
        n, cplx = block.shape[0], block.is_complex()
        k = 2 if cplx else 1
        planes = torch.view_as_real(block.resolve_conj()).flatten(2) if cplx else block
        blocks = [planes[:, mb, k * base:k * (base + G * R)] for mb in range(Mb)]
        cache = {} if cache is None else cache
        key = (orient, vec.data_ptr(), tuple(vec.shape), tuple(vec.stride()), vec.is_conj())
        if orient == "rows":      # out[b, g, m] = sum_mb V[b, mb, g, :] @ (vec^T C[mb])[b, :, m]
            if key not in cache:
                cache[key] = (_planes_rhs(vec.transpose(1, 2)) if cplx
                              else vec.transpose(1, 2).contiguous()).flatten(0, 1)    # (n kR, k Mv)
            rhs = (cache[key] @ (rows_coef2 if cplx else rows_coef)).view(n, k * R, Mb, k * M)
            acc = torch.zeros(n, G, k * M, dtype=planes.dtype, device=block.device)
            for mb in range(Mb):
                acc.baddbmm_(blocks[mb].unflatten(1, (G, k * R)), rhs[:, :, mb])
            out = torch.view_as_complex(acc.unflatten(2, (M, 2))) if cplx else acc
            return out.transpose(1, 2)
        # cols: out[b, m, g] = sum_mb (C[mb]^T vec)[b, m, :] @ V[b, mb, :, g]; complex as rows (m, s)
        if key not in cache:                                                    # (n, Mv, [2] R)
            cache[key] = torch.stack([vec.real, vec.imag], 2).flatten(2) if cplx else vec
        lhs = torch.matmul(cols_coef, cache[key])                                # (n, Mb M, k R)
        acc = torch.zeros(n, M * k, k * G, dtype=planes.dtype, device=block.device)
        for mb in range(Mb):
            acc.baddbmm_(lhs[:, mb * M:(mb + 1) * M].reshape(n, M * k, R), blocks[mb].unflatten(1, (R, k * G)))
        if not cplx:
            return acc
        P = acc.view(n, M, 2, G, 2)                                              # (n, m, s, g, c)
        return torch.complex(P[:, :, 0, :, 0] - P[:, :, 1, :, 1], P[:, :, 0, :, 1] + P[:, :, 1, :, 0])
    run.shares_cache = True
    return run


def _zip_executor(plan: CGPlan, index: int, device, real, left, right, weight_cols):
    entries = entry_executor(plan, index, left, right, device, real)
    wi = None if weight_cols is None else _index(weight_cols, device)

    def run(A: torch.Tensor, B: torch.Tensor, w) -> torch.Tensor:
        Z = entries(A, B)
        if w is not None:
            Z = Z * (w[:, None, wi] if isinstance(wi, slice) else w.index_select(1, wi)[:, None])
        return Z
    return run


def path_executor(plan: CGPlan, index: int, device: torch.device, real: torch.dtype, weighted: bool):
    """``(run, cols)``: ``run(A, B, w)`` evaluates path ``index`` on its parts ``A (n, 2l1+1, n1)``
    and ``B (n, 2l2+1, n2)`` (and weights ``w (n, num_weights)`` when ``weighted``), returning
    ``Z (n, 2l+1, K)``; ``cols (K,)`` is the output fragment of each column (equal fragments sum)."""
    p = plan.paths[index]
    out, left, right, entry = plan.path_groups[index]
    kind = path_structure(plan, index)
    off = plan.weight_offsets[index]
    if weighted and kind[0] != "zip":
        kind = ("generic",)
    if kind[0] == "outer":
        return _outer_executor(plan, index, device, real), out
    if kind[0] == "contract":
        return _contract_executor(plan, index, device, real, *kind[1:]), out
    if kind[0] == "zip":
        wcols = off + entry[:, 0] if weighted else None
        return _zip_executor(plan, index, device, real, left[:, 0], right[:, 0], wcols), out
    wcols = off + np.arange(p.size) if weighted else None
    return _zip_executor(plan, index, device, real, p.left, p.right, wcols), np.asarray(p.out, dtype=np.int64)
