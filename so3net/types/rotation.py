"""The group action on parts: ``F -> D^l(R) F`` (private helpers of ``rotate``/``apply``).

Complex basis: ``D^l = wigner_D_from_matrix(l, R)`` (:mod:`so3net.wigner`; z-y-z, with
``Y^l(R r) = D^l(R) Y^l(r)`` and ``CG(D x, D y) = D CG(x, y)``). Real basis: the real orthogonal
matrix ``Q_l D^l Q_l^†`` (``Q_l = so3net.basis.change_of_basis(l)``; its imaginary part is
round-off and is dropped), in the data's dtype.
"""
from __future__ import annotations

import torch

from ..wigner import wigner_D_from_matrix
from ._basis import basis_matrix
from ._checks import broadcast_batch


def check_rotation(R, batch: tuple[int, ...]) -> torch.Tensor:
    """``R`` must be a real tensor ``(r..., 3, 3)`` whose batch broadcasts against the data's."""
    if not isinstance(R, torch.Tensor) or R.dim() < 2 or tuple(R.shape[-2:]) != (3, 3) or R.is_complex():
        shape = tuple(R.shape) if isinstance(R, torch.Tensor) else type(R).__name__
        raise ValueError(f"rotate expects real rotation matrices of shape (..., 3, 3), got {shape}")
    broadcast_batch(tuple(R.shape[:-2]), batch, "rotate")
    return R


def rotation_block(l: int, R: torch.Tensor, basis: str, dtype: torch.dtype, device) -> torch.Tensor:
    """``D^l(R)`` in the given basis, shape ``(r..., 2l+1, 2l+1)``, as ``dtype`` on ``device``."""
    D = wigner_D_from_matrix(l, R.to(torch.float64))
    if basis == "real":
        D = _to_real_basis(l, D).real  # Q D Q^† is real orthogonal: the imaginary part is round-off
    return D.to(device=device, dtype=dtype)


def _to_real_basis(l: int, D: torch.Tensor) -> torch.Tensor:
    """``Q D Q^†`` with ``Q`` the complex-to-real change of basis of :mod:`so3net.basis`."""
    return basis_matrix(l).to(D.device) @ D @ basis_matrix(l, inverse=True).to(D.device)


def check_block(D, l: int, what: str = "apply") -> torch.Tensor:
    if not isinstance(D, torch.Tensor) or D.dim() < 2 or tuple(D.shape[-2:]) != (2 * l + 1, 2 * l + 1):
        shape = tuple(D.shape) if isinstance(D, torch.Tensor) else type(D).__name__
        raise ValueError(f"{what} expects a matrix of shape (..., {2 * l + 1}, {2 * l + 1}) for l={l}, got {shape}")
    return D
