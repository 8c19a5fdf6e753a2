"""Complex spherical harmonics of unit vectors, all l <= lmax, packed (private helper of the layers).

Convention (DESIGN.md): orthonormal on the sphere, Condon–Shortley phase, ``Y^l(R r) = D^l(R) Y^l(r)``.
For m >= 0, ``Y_l^m(r̂) = (-1)^m N_lm Q_l^m(z) (x + i y)^m`` with ``Q_l^m = d^m P_l / dz^m`` (a
polynomial, computed by its three-term recurrence) and ``N_lm = sqrt((2l+1)/(4π) (l-m)!/(l+m)!)``;
``Y_l^{-m} = (-1)^m conj(Y_l^m)``. Polynomial in (x, y, z) of the unit vector, so it is smooth on
the poles. Output layout: packed type (1, 1, ..., 1): part l in columns ``[l², (l+1)²)``, index m+l.
"""
from __future__ import annotations

import math

import torch

__all__ = ["unit_spherical_harmonics"]


def _legendre_derivatives(z: torch.Tensor, lmax: int) -> dict[tuple[int, int], torch.Tensor]:
    """``Q[l, m] = d^m P_l / dz^m`` for 0 <= m <= l <= lmax."""
    Q = {}
    for m in range(lmax + 1):
        Q[m, m] = torch.full_like(z, float(math.prod(range(1, 2 * m, 2))))
        if m + 1 <= lmax:
            Q[m + 1, m] = (2 * m + 1) * z * Q[m, m]
        for l in range(m + 2, lmax + 1):
            Q[l, m] = ((2 * l - 1) * z * Q[l - 1, m] - (l + m - 1) * Q[l - 2, m]) / (l - m)
    return Q


def unit_spherical_harmonics(lmax: int, unit: torch.Tensor) -> torch.Tensor:
    """``Y^l_m(unit)`` for l = 0..lmax, packed ``(..., (lmax+1)²)``, complex of the input's precision.

    ``unit``: ``(..., 3)`` real unit vectors (not renormalised here).
    """
    if unit.shape[-1:] != (3,):
        raise ValueError(f"unit vectors must have shape (..., 3), got {tuple(unit.shape)}")
    x, y, z = unit.unbind(-1)
    Q = _legendre_derivatives(z, lmax)
    xy = torch.complex(x, y)
    powers = [torch.ones_like(xy)]
    for _ in range(lmax):
        powers.append(powers[-1] * xy)
    cols = []
    for l in range(lmax + 1):
        pos = []
        for m in range(l + 1):
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            pos.append(((-1) ** m * norm) * Q[l, m] * powers[m])
        neg = [(-1) ** m * pos[m].conj() for m in range(l, 0, -1)]
        cols.extend(neg + pos)
    return torch.stack(cols, -1)
