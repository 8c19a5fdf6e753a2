"""Change of basis of part tensors between the complex and the real basis (private).

The real basis is :mod:`so3net.basis`'s: real components ``Q_l x`` of a complex-basis part ``x``
(``Q_l = change_of_basis(l)``, unitary; real spherical harmonics ``Y_real = Q_l Y``). The complex
form of real data (``conj(x_m) = (-1)^m x_{-m}``, e.g. the coefficients of a real function) has
real components with zero imaginary part. The group acts in the real basis by the real orthogonal
matrices ``Q_l D^l(R) Q_l^†``.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from ..basis import change_of_basis

__all__ = ["basis_matrix", "convert_part"]

_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


@lru_cache(maxsize=None)
def _matrix(l: int, inverse: bool) -> torch.Tensor:
    q = change_of_basis(l)
    return torch.tensor(q.conj().T if inverse else q, dtype=torch.complex128)


def basis_matrix(l: int, inverse: bool = False) -> torch.Tensor:
    """``Q_l`` (complex -> real) or, with ``inverse``, ``Q_l^†`` (real -> complex); complex128 on CPU."""
    return _matrix(int(l), bool(inverse))


def convert_part(t: torch.Tensor, l: int, source: str, target: str, dtype: torch.dtype | None) -> torch.Tensor:
    """Components of the part tensor ``t (b..., 2l+1, n)`` in the ``target`` basis.

    complex -> real: ``Q_l t``; a real ``dtype`` keeps the real part after checking that the
    imaginary part is round-off (so ``t`` was the complex form of real data), else it raises.
    real -> complex: ``Q_l^† t``, complex (float32 data gives complex64, float64 gives complex128).
    ``dtype=None`` keeps the precision (complex -> real stays complex).
    """
    if source == target:
        return t if dtype is None else t.to(dtype)
    if source == "real":
        out_dtype = dtype or (t.dtype if t.is_complex() else _COMPLEX_OF[t.dtype])
        return basis_matrix(l, True).to(device=t.device, dtype=out_dtype) @ t.to(out_dtype)
    y = basis_matrix(l).to(device=t.device, dtype=t.dtype) @ t
    if dtype is None or dtype.is_complex:
        return y if dtype is None else y.to(dtype)
    _check_imaginary(y, l)
    return y.real.to(dtype)


def _check_imaginary(y: torch.Tensor, l: int) -> None:
    """The real components of the complex form of real data have round-off imaginary parts."""
    if y.numel() == 0:
        return
    scale = float(y.detach().abs().max())
    residue = float(y.imag.detach().abs().max())
    tol = 64 * torch.finfo(y.real.dtype).eps * max(scale, 1.0)
    if residue > tol:
        raise ValueError(f"converting part l={l} to a real dtype in the real basis: its real-basis components have "
                         f"imaginary parts up to {residue:.3g} (tolerance {tol:.3g}), so it is not the complex form "
                         f"of real data (conj(x_m) = (-1)^m x_(-m)); keep a complex dtype (dtype=None)")
