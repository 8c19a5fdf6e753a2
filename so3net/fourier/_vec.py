"""Coefficients in and out: plain ``{l: part}`` dicts inside, ``so3net.types.SO3vec`` outside.

Parts follow the library storage convention: degree ``l`` with ``n`` fragments is a tensor
``(b..., 2l+1, n)``. Sphere coefficients have one fragment per l; group coefficients have
``2l+1`` fragments (the columns m' of the Fourier matrix F^l).
"""
from __future__ import annotations

import torch

from ..types import SO3vec


def make_vec(parts: dict[int, torch.Tensor]) -> SO3vec:
    """Wrap parts ``{l: (b..., 2l+1, n)}`` as an SO3vec."""
    return SO3vec(dict(sorted(parts.items())))


def parts_of(coeffs, what: str = "coefficients") -> dict[int, torch.Tensor]:
    """The ``{l: tensor}`` parts of an SO3vec or of a dict of parts; parts with zero fragments
    (how SO3vec stores absent degrees) are dropped."""
    if isinstance(coeffs, SO3vec) and coeffs.basis != "complex":
        raise ValueError(f"{what}: Fourier components are in the complex basis (Condon–Shortley); "
                         f"got an SO3vec in the {coeffs.basis!r} basis")
    parts = coeffs.parts if isinstance(coeffs, SO3vec) else coeffs
    if not isinstance(parts, dict) or not parts:
        raise TypeError(f"{what} must be an SO3vec or a non-empty dict {{l: tensor (b..., 2l+1, n)}}, "
                        f"got {type(coeffs).__name__}")
    for l, p in parts.items():
        if not isinstance(p, torch.Tensor) or p.dim() < 2 or p.shape[-2] != 2 * l + 1:
            shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"{what}: part l={l} must have shape (b..., 2l+1, n) with 2l+1 = {2 * l + 1}, "
                             f"got {shape}")
    parts = {l: p for l, p in sorted(parts.items()) if p.shape[-1] > 0}
    if not parts:
        raise ValueError(f"{what}: every part has zero fragments; nothing to transform")
    return parts


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """complex64 for float32/complex64 data, complex128 for float64/complex128."""
    if dtype in (torch.float64, torch.complex128):
        return torch.complex128
    if dtype in (torch.float32, torch.complex64):
        return torch.complex64
    raise TypeError(f"expected float32/float64/complex64/complex128 data, got {dtype}")


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if complex_dtype(dtype) == torch.complex128 else torch.float32
