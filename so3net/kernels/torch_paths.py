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


def _outer_program(plan: CGPlan, index: int, device, real):
    C = torch.as_tensor(_dense(plan, index), device=device, dtype=real)

    def run(A: torch.Tensor, B: torch.Tensor, w) -> torch.Tensor:
        n, M2, nR = A.shape[0], B.shape[1], B.shape[2]
        T = torch.einsum("bpi,pqm->bmiq", A, C.to(A.dtype))                   # (n, M, nL, M2)
        M, nL = T.shape[1], T.shape[2]
        if not A.is_complex():
            return torch.bmm(T.reshape(n, M * nL, M2), B).reshape(n, M, nL * nR)
        L = torch.view_as_real(T).reshape(n, M * nL, 2 * M2)
        Rm = torch.view_as_real(torch.stack([B, 1j * B], 2).resolve_conj()).reshape(n, 2 * M2, 2 * nR)
        Z = torch.bmm(L, Rm).reshape(n, M * nL, nR, 2)
        return torch.view_as_complex(Z).reshape(n, M, nL * nR)
    return run


def _contract_program(plan: CGPlan, index: int, device, real, side: str, orient: str, base: int):
    G, R = plan.path_groups[index][1].shape
    C = _dense(plan, index)
    if side == "right":
        C = C.transpose(1, 0, 2)                                                # [m_block, m_vec, m]
    C = torch.as_tensor(np.ascontiguousarray(C), device=device, dtype=real)

    def run(A: torch.Tensor, B: torch.Tensor, w) -> torch.Tensor:
        block, vec = (A, B) if side == "left" else (B, A)
        vec = vec[:, :, :R].resolve_conj()
        H = []
        for mb in range(block.shape[1]):
            V = block[:, mb, base:base + G * R]
            if orient == "rows":
                H.append(torch.bmm(V.unflatten(1, (G, R)), vec.transpose(1, 2)))          # (n, G, Mv)
            else:
                H.append(torch.bmm(vec, V.unflatten(1, (R, G))).transpose(1, 2))          # (n, G, Mv)
        return torch.einsum("bpgq,pqm->bmg", torch.stack(H, 1), C.to(block.dtype))
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
