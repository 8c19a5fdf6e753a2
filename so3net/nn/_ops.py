"""Two autograd Functions the layers need, each differentiable to any order (its backward calls
itself): a constant sparse matrix times a dense one, and a batched matmul whose complex backward
avoids torch's per-batch fallback for conjugate views."""
from __future__ import annotations

import torch

__all__ = ["SparseLeft", "batched_matmul"]


class SparseLeft(torch.autograd.Function):
    """``w @ x`` for a constant sparse real ``w``; backward ``wt @ g`` by the same Function, so it is
    differentiable to any order."""

    @staticmethod
    def forward(ctx, x, w, wt):
        ctx.mats = (w, wt)
        return torch.sparse.mm(w, x)

    @staticmethod
    def backward(ctx, g):
        w, wt = ctx.mats
        return SparseLeft.apply(g, wt, w), None, None


def _bmm_ready(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when bmm reads it directly (row- or column-major matrices), else a contiguous copy."""
    s = t.stride()
    if t.is_conj() or not (s[2] == 1 or s[1] == 1):
        return t.resolve_conj().contiguous()
    return t


class _Bmm(torch.autograd.Function):
    """``torch.bmm`` with a backward that conjugates with contiguous copies (of the operand, or of the
    gradient and the result when those are smaller) and lets bmm read transposes in place: torch's
    own complex backward hands bmm conjugate views, for which it falls back to one small GEMM per
    batch entry. Differentiable to any order."""

    @staticmethod
    def forward(ctx, a, b):
        a, b = _bmm_ready(a), _bmm_ready(b)
        ctx.save_for_backward(a, b)
        return torch.bmm(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g = _bmm_ready(g)
        ga = gb = None
        if ctx.needs_input_grad[0]:   # g b^H, or conj(conj(g) b^T) when b is the larger tensor
            ga = (_Bmm.apply(g, _conj(b).transpose(1, 2)) if b.numel() <= g.numel() + a.numel()
                  else _conj(_Bmm.apply(_conj(g), b.transpose(1, 2))))
        if ctx.needs_input_grad[1]:   # a^H g, or conj(a^T conj(g)) when a is the larger tensor
            gb = (_Bmm.apply(_conj(a).transpose(1, 2), g) if a.numel() <= g.numel() + b.numel()
                  else _conj(_Bmm.apply(a.transpose(1, 2), _conj(g))))
        return ga, gb


def _conj(t: torch.Tensor) -> torch.Tensor:
    return t.conj_physical() if t.is_complex() else t


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)`` with the fast complex backward of ``_Bmm`` (any order)."""
    return _Bmm.apply(a, b)
