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

__all__ = ["path_structure", "path_program", "entry_program"]


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


def entry_program(plan: CGPlan, index: int, left, right, device: torch.device, real: torch.dtype):
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


def _planes_rhs(Y: torch.Tensor) -> torch.Tensor:
    """``[[Yr, Yi], [-Yi, Yr]]`` as a real (n, 2K, 2N) matrix for complex ``Y (n, K, N)``: rows
    (k, s) with s = 0 for the real and 1 for the imaginary part of the left factor, columns
    (j, c) interleaved like ``view_as_real``. Then ``view_as_real(L) @ rhs = view_as_real(L @ Y)``
    for complex ``L (n, M, K)`` whose real view has columns (k, s)."""
    n, K, N = Y.shape
    planes = torch.view_as_real(Y.resolve_conj())
    rhs = torch.empty(n, K, 2, N, 2, dtype=planes.dtype, device=Y.device)
    rhs[:, :, 0] = planes
    rhs[:, :, 1, :, 0] = planes[..., 1]
    rhs[:, :, 1, :, 0].neg_()
    rhs[:, :, 1, :, 1] = planes[..., 0]
    return rhs.view(n, 2 * K, 2 * N)


def _outer_program(plan: CGPlan, index: int, device, real):
    M1, M2, M = (2 * l + 1 for l in (plan.paths[index].l1, plan.paths[index].l2, plan.paths[index].l))
    dense = _dense(plan, index)
    C = torch.as_tensor(dense.reshape(M1, M2 * M), device=device, dtype=real)
    # m whose block has a single m2 (l1 = 0 or l2 = 0): one pointwise outer product, written in place
    single = [np.flatnonzero(dense[:, :, m].any(0)) for m in range(M)]
    single = [int(q[0]) if len(q) == 1 else None for q in single]

    def factors(A: torch.Tensor):
        """``T (M, n, nL, M2)`` (complex) with ``T[m, b, i, m2] = sum_m1 C[m1, m2, m] A[b, m1, i]``,
        m-major so that each m's GEMM operand is contiguous."""
        n, nL = A.shape[0], A.shape[2]
        if not A.is_complex():
            T = (A.transpose(1, 2).reshape(n * nL, M1) @ C).view(n, nL, M2, M)
            return T.permute(3, 0, 1, 2).contiguous()
        Ar = torch.view_as_real(A.resolve_conj()).permute(0, 2, 3, 1).reshape(n * nL * 2, M1)
        T = (Ar @ C).view(n, nL, 2, M2, M).permute(4, 0, 1, 3, 2).contiguous()    # (M, n, nL, M2, 2)
        return torch.view_as_complex(T)

    def run_into(A: torch.Tensor, B: torch.Tensor, target: torch.Tensor, accumulate: bool) -> None:
        """Write the block into ``target (n, M, nL * nR)`` (a view of the output): per m, a
        pointwise outer product in place when m has one m2, else one GEMM (complex numbers as
        real planes) into a small reused buffer that is then copied (GEMMs cannot write strided
        blocks)."""
        T = factors(A)
        n, nL, nR = A.shape[0], A.shape[2], B.shape[2]
        rhs = buf = None
        for m in range(M):
            dest = target[:, m].unflatten(1, (nL, nR))
            if single[m] is not None:
                u, v = T[m, :, :, single[m], None], B[:, None, single[m]]
                dest.addcmul_(u, v) if accumulate else torch.mul(u, v, out=dest)
                continue
            if rhs is None:
                rhs = _planes_rhs(B) if B.is_complex() else B
                buf = torch.empty(n, nL, rhs.shape[2], dtype=rhs.dtype, device=rhs.device)
            lhs = torch.view_as_real(T[m]).flatten(2) if B.is_complex() else T[m]
            torch.bmm(lhs, rhs, out=buf)
            out = torch.view_as_complex(buf.unflatten(2, (nR, 2))) if B.is_complex() else buf
            dest.add_(out) if accumulate else dest.copy_(out)

    def run(A: torch.Tensor, B: torch.Tensor, w) -> torch.Tensor:
        out = torch.empty(A.shape[0], M, A.shape[2] * B.shape[2], dtype=A.dtype, device=A.device)
        run_into(A, B, out, False)
        return out

    run.into = run_into
    return run


def _contract_program(plan: CGPlan, index: int, device, real, side: str, orient: str, base: int):
    """Contraction of a contiguous (G, R) or (R, G) block of one operand with the same R-vector of
    the other: the vector is first contracted with the coefficients, ``U[mb][b, r, m] = sum_mv
    C[mb, mv, m] vec[b, mv, r]`` (small), then one real GEMM per block m reads the block in place
    and accumulates into a small (G, M) result."""
    G, R = plan.path_groups[index][1].shape
    C = _dense(plan, index)
    if side == "right":
        C = C.transpose(1, 0, 2)                                                # [m_block, m_vec, m]
    Mb, Mv, M = C.shape
    C = torch.as_tensor(np.ascontiguousarray(C.transpose(1, 0, 2)).reshape(Mv, Mb * M), device=device, dtype=real)

    def run(A: torch.Tensor, B: torch.Tensor, w) -> torch.Tensor:
        block, vec = (A, B) if side == "left" else (B, A)
        n, cplx, k = block.shape[0], block.is_complex(), 2 if block.is_complex() else 1
        vec = vec[:, :, :R].resolve_conj()
        U = (vec.transpose(1, 2).reshape(n * R, Mv) @ C.to(vec.dtype)).view(n, R, Mb, M)
        planes = torch.view_as_real(block.resolve_conj()).flatten(2) if cplx else block
        blocks = [planes[:, mb, k * base:k * (base + G * R)] for mb in range(Mb)]
        if orient == "rows":      # out[b, g, m] = sum_mb sum_r V[b, mb, g, r] U[mb][b, r, m]
            rhs = U.permute(2, 0, 1, 3)                                           # (Mb, n, R, M)
            rhs = _planes_rhs(rhs.reshape(Mb * n, R, M)).view(Mb, n, 2 * R, 2 * M) if cplx else rhs.contiguous()
            acc = torch.zeros(n, G, k * M, dtype=planes.dtype, device=block.device)
            for mb in range(Mb):
                acc.baddbmm_(blocks[mb].unflatten(1, (G, k * R)), rhs[mb])
            out = torch.view_as_complex(acc.unflatten(2, (M, 2))) if cplx else acc
            return out.transpose(1, 2)
        # cols: out[b, m, g] = sum_mb sum_r U[mb][b, r, m] V[b, mb, r, g]; complex as [Ur; Ui] @ V planes
        lhs = U.permute(2, 0, 3, 1)                                               # (Mb, n, M, R)
        lhs = torch.cat([lhs.real, lhs.imag], 2) if cplx else lhs.contiguous()   # (Mb, n, k M, R)
        acc = torch.zeros(n, k * M, k * G, dtype=planes.dtype, device=block.device)
        for mb in range(Mb):
            acc.baddbmm_(lhs[mb], blocks[mb].unflatten(1, (R, k * G)))
        if not cplx:
            return acc
        P = acc.unflatten(2, (G, 2)).unflatten(1, (2, M))                        # (n, s, M, G, c)
        return torch.complex(P[:, 0, :, :, 0] - P[:, 1, :, :, 1], P[:, 0, :, :, 1] + P[:, 1, :, :, 0])
    return run


def _zip_program(plan: CGPlan, index: int, device, real, left, right, weight_cols):
    entries = entry_program(plan, index, left, right, device, real)
    wi = None if weight_cols is None else _index(weight_cols, device)

    def run(A: torch.Tensor, B: torch.Tensor, w) -> torch.Tensor:
        Z = entries(A, B)
        if w is not None:
            Z = Z * (w[:, None, wi] if isinstance(wi, slice) else w.index_select(1, wi)[:, None])
        return Z
    return run


def path_program(plan: CGPlan, index: int, device: torch.device, real: torch.dtype, weighted: bool):
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
        return _outer_program(plan, index, device, real), out
    if kind[0] == "contract":
        return _contract_program(plan, index, device, real, *kind[1:]), out
    if kind[0] == "zip":
        wcols = off + entry[:, 0] if weighted else None
        return _zip_program(plan, index, device, real, left[:, 0], right[:, 0], wcols), out
    wcols = off + np.arange(p.size) if weighted else None
    return _zip_program(plan, index, device, real, p.left, p.right, wcols), np.asarray(p.out, dtype=np.int64)
