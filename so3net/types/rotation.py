"""The group action on parts: ``F -> D^l(R) F`` (private helpers of ``rotate``/``apply``).

Complex basis: ``D^l = wigner_D_from_matrix(l, R)`` (:mod:`so3net.wigner`; z-y-z, with
``Y^l(R r) = D^l(R) Y^l(r)`` and ``CG(D x, D y) = D CG(x, y)``). Real basis: the same matrix
conjugated by the unitary change of basis of :mod:`so3net.basis`.
"""
from __future__ import annotations

import torch

from ..wigner import wigner_D_from_matrix
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
        D = _to_real_basis(l, D)
    if not dtype.is_complex:
        D = D.real  # Q D Q^† is real in the real basis
    return D.to(device=device, dtype=dtype)


def _to_real_basis(l: int, D: torch.Tensor) -> torch.Tensor:
    """``Q D Q^†`` with ``Q`` the complex-to-real change of basis of :mod:`so3net.basis`."""
    try:
        from ..basis import change_of_basis
    except ImportError as err:
        raise RuntimeError(
            "rotating real-basis data needs so3net.basis.change_of_basis(l) (the unitary Q_l from the complex "
            "to the real basis), which is not available in this build; rotate in the complex basis") from err
    Q = torch.as_tensor(change_of_basis(l), dtype=torch.complex128)
    return Q @ D @ Q.conj().transpose(-1, -2)


def require_real_basis(what: str) -> None:
    """Real-basis products need ``so3net.basis.real_cg_block`` (the tables Q C Q^†)."""
    try:
        from ..basis import real_cg_block  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"{what} in the real basis needs so3net.basis.real_cg_block (the real-basis CG tables), "
                           f"which is not available in this build; use the complex basis") from err


def check_block(D, l: int, what: str = "apply") -> torch.Tensor:
    if not isinstance(D, torch.Tensor) or D.dim() < 2 or tuple(D.shape[-2:]) != (2 * l + 1, 2 * l + 1):
        shape = tuple(D.shape) if isinstance(D, torch.Tensor) else type(D).__name__
        raise ValueError(f"{what} expects a matrix of shape (..., {2 * l + 1}, {2 * l + 1}) for l={l}, got {shape}")
    return D
