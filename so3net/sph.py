"""Complex spherical harmonics from Cartesian coordinates (batched torch, differentiable).

Convention (fixed, pinned by ``tests/test_sph.py``): orthonormal on the unit sphere,
Condon–Shortley phase, equal to ``scipy.special.sph_harm_y(l, m, theta, phi)`` with theta the
polar angle from +z and phi the azimuth from +x towards +y. The vector
``Y^l = (Y^l_{-l}, ..., Y^l_l)`` is stored with index ``m + l`` last, and it transforms as
``Y^l(R r) = D^l(R) Y^l(r)`` with :func:`so3net.wigner.wigner_D`.

Method: for m >= 0, ``r^l Y^l_m(r) = A^l_m(z, r^2) (x + i y)^m`` where the polynomials ``A`` obey
the normalised recurrences

    A^0_0 = 1/sqrt(4 pi),        A^m_m = -sqrt((2m+1)/(2m)) A^{m-1}_{m-1},
    A^{m+1}_m = sqrt(2m+3) z A^m_m,
    A^l_m = a_lm z A^{l-1}_m - b_lm r^2 A^{l-2}_m,
    a_lm = sqrt((4l^2-1)/(l^2-m^2)),  b_lm = sqrt(((l-1)^2-m^2)(2l+1)/((2l-3)(l^2-m^2))),

and ``Y^l_{-m} = (-1)^m conj(Y^l_m)``. No angles and no division are involved, so the values and
gradients are smooth everywhere, the poles included. On the unit sphere ``A^l_m(z, 1)`` is
proportional to the m-th derivative of the Legendre polynomial, so ``dA^l_m/dz =
-sqrt((l-m)(l+m+1)) A^l_{m+1}``: the backward pass of :func:`spherical_harmonics` uses this
identity instead of differentiating the recurrence step by step, and it is itself written with
differentiable torch operations (double backward works).

Value at ``r = 0`` (where the direction is undefined): ``Y^0 = 1/sqrt(4 pi)`` and ``Y^{l>0} = 0``,
with zero gradient; a point whose ``|r|^2`` underflows to 0 (``|r| < ~1e-154`` in float64,
``~1e-22`` in float32) counts as the origin.

Inputs must be finite with a representable ``|r|^2`` (``|r| < 1.3e154`` in float64, ``1.8e19`` in
float32): otherwise :func:`spherical_harmonics` raises a ``ValueError`` naming the vector, because
an overflowing ``|r|^2`` would lose the direction (all ``Y^{l>0}`` zero) and a NaN would count as
the origin. Scale such vectors down: ``Y^l`` depends on the direction only.

Inputs are float32 (output complex64) or float64 (output complex128). ``normalize=False`` gives
the solid harmonics, differentiated by plain autograd through the homogeneous recurrence.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .cg import check_lm

__all__ = ["spherical_harmonics", "spherical_harmonics_all", "solid_harmonics"]

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


@lru_cache(maxsize=None)
def _coefficients(lmax: int) -> tuple[tuple[float, ...], dict[tuple[int, int], tuple[float, float]]]:
    """``(A^m_m for m = 0..lmax, {(l, m): (a_lm, b_lm)})`` of the recurrence above."""
    diagonal = [1 / math.sqrt(4 * math.pi)]
    for m in range(1, lmax + 1):
        diagonal.append(-math.sqrt((2 * m + 1) / (2 * m)) * diagonal[-1])
    ab = {}
    for l in range(2, lmax + 1):
        for m in range(l - 1):
            a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = math.sqrt(((l - 1) ** 2 - m * m) * (2 * l + 1) / ((2 * l - 3) * (l * l - m * m)))
            ab[l, m] = (a, b)
    return tuple(diagonal), ab


def _powers(x: torch.Tensor, y: torch.Tensor, mmax: int) -> tuple[list, list]:
    """Real and imaginary parts ``C[m], S[m]`` of ``(x + i y)^m`` for m = 0..mmax (C[0] = 1, S[0] = 0)."""
    C, S = [1.0, x], [0.0, y]
    for m in range(2, mmax + 1):
        C.append(x * C[m - 1] - y * S[m - 1])
        S.append(x * S[m - 1] + y * C[m - 1])
    return C[: mmax + 1], S[: mmax + 1]


def _legendre(z: torch.Tensor, r2: torch.Tensor | None, lmax: int) -> list[list]:
    """``A[l][m]`` for 0 <= m <= l <= lmax (Python floats where constant).

    ``r2=None`` evaluates on the unit sphere (r^2 = 1), otherwise the homogeneous polynomials.
    """
    diagonal, ab = _coefficients(lmax)
    A: list[list] = []
    for l in range(lmax + 1):
        row = []
        for m in range(l + 1):
            if m == l:
                row.append(diagonal[l])
            elif m == l - 1:
                row.append(z * (math.sqrt(2 * m + 3) * diagonal[m]))
            else:
                a, b = ab[l, m]
                near, far = A[l - 1][m], A[l - 2][m]
                far = b * far if r2 is None else (b * far) * r2
                row.append((z * near) * a - far if isinstance(near, torch.Tensor) else (a * near) * z - far)
        A.append(row)
    return A


def _rows(xyz: torch.Tensor, differentiable: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit vectors as contiguous rows ``(3, N)``, ``1/|r|`` and ``|r| > 0`` for ``xyz`` (N, 3).

    At the origin the unit vector and ``1/|r|`` are 0 and so are their gradients: when
    ``differentiable``, the square root only ever sees positive numbers, so no NaN appears in any
    derivative; otherwise (no graph is recorded) the origin is patched in place.
    """
    rows = xyz.T.contiguous()
    x, y, z = rows
    n2 = torch.addcmul(torch.addcmul(x * x, y, y), z, z)
    nonzero = n2 > 0
    if differentiable:
        inv_r = torch.where(nonzero, torch.rsqrt(torch.where(nonzero, n2, torch.ones_like(n2))), torch.zeros_like(n2))
    else:
        inv_r = torch.rsqrt(n2).masked_fill_(~nonzero, 0.0)
    return rows * inv_r, inv_r, nonzero


@lru_cache(maxsize=None)
def _expansion_np(l: int) -> np.ndarray:
    """Matrix ``E`` (2l+1, 2(2l+1)) taking the planes of one degree to interleaved (re, im) of Y^l.

    Plane rows: ``A_0``, then ``A_m C_m``, ``A_m S_m`` for m = 1..l. Columns: ``2 (m + l) + (0 | 1)``.
    ``E`` carries ``Y_{-m} = (-1)^m conj(Y_m)``.
    """
    E = np.zeros((2 * l + 1, 2 * (2 * l + 1)))
    E[0, 2 * l] = 1.0
    for m in range(1, l + 1):
        sign = (-1.0) ** m
        E[2 * m - 1, 2 * (l + m)], E[2 * m - 1, 2 * (l - m)] = 1.0, sign
        E[2 * m, 2 * (l + m) + 1], E[2 * m, 2 * (l - m) + 1] = 1.0, -sign
    return E


def _expansion(l: int, like: torch.Tensor) -> torch.Tensor:
    return _expansion_on(l, like.dtype, like.device)


@lru_cache(maxsize=None)
def _expansion_on(l: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``E`` as a tensor, kept per dtype and device (no host-to-device copy per call)."""
    return torch.tensor(_expansion_np(l), dtype=dtype, device=device)


def _planes(P: torch.Tensor, l: int, A: list, C: list, S: list, mask: torch.Tensor) -> None:
    """Write the planes of degree l into ``P`` (2l+1, N); ``mask`` zeroes Y^{l>0} at the origin."""
    if l == 0:
        P[0].fill_(A[0][0])
    else:
        torch.mul(A[l][0], mask, out=P[0])
    for m in range(1, l + 1):
        torch.mul(C[m], A[l][m], out=P[2 * m - 1])
        torch.mul(S[m], A[l][m], out=P[2 * m])


def _acc(total, a: torch.Tensor, b, scale: float = 1.0) -> torch.Tensor:
    """``total + scale * a * b`` where ``total`` may be None and ``b`` a tensor or a float."""
    if isinstance(b, torch.Tensor):
        if total is None:
            return a * b if scale == 1.0 else (a * b) * scale
        return torch.addcmul(total, a, b, value=scale)
    return a * (scale * b) if total is None else torch.add(total, a, alpha=scale * b)


def _grad_rows(u: torch.Tensor, ls: tuple[int, ...], grads: tuple) -> list:
    """Gradient rows ``(gx, gy, gz)`` of ``sum Re(conj(G) Y)`` with respect to the unit vector ``u``,
    with ``Y`` extended off the sphere as ``A(z, 1) (x + i y)^m`` (reverse mode through the planes,
    using ``dA_m/dz = -sqrt((l-m)(l+m+1)) A_{m+1}`` and ``d(x+iy)^m = m (x+iy)^{m-1} (dx + i dy)``).
    Rows without any contribution are None. The origin's mask is left out: there ``1/|r| = 0``.
    """
    x, y, z = u
    lmax = max(ls)
    A, (C, S) = _legendre(z, None, lmax), _powers(x, y, lmax)
    gx = gy = gz = None
    gC, gS = [None] * (lmax + 1), [None] * (lmax + 1)
    for l, G in zip(ls, grads):
        if G is None or l == 0:
            continue
        H = torch.mm(_expansion(l, u), torch.view_as_real(G).flatten(1).T)
        gz = _acc(gz, H[0], A[l][1], -math.sqrt(l * (l + 1)))
        for m in range(1, l + 1):
            hc, hs = H[2 * m - 1], H[2 * m]
            gC[m], gS[m] = _acc(gC[m], hc, A[l][m]), _acc(gS[m], hs, A[l][m])
            if m < l:
                gz = _acc(gz, _acc(hc * C[m], hs, S[m]), A[l][m + 1], -math.sqrt((l - m) * (l + m + 1)))
    if lmax > 0 and gC[1] is not None:
        gx, gy = gC[1], gS[1]  # m = 1: (x + i y)^0 = 1
    for m in range(2, lmax + 1):
        if gC[m] is not None:
            gx = _acc(_acc(gx, gC[m], C[m - 1], m), gS[m], S[m - 1], m)
            gy = _acc(_acc(gy, gS[m], C[m - 1], m), gC[m], S[m - 1], -m)
    return [gx, gy, gz]


class _SphericalHarmonics(torch.autograd.Function):
    """Y^l(xyz / |xyz|) for the degrees ``ls``; xyz is (N, 3), outputs are complex (N, 2l+1).

    Forward writes the real planes of each degree and expands them to interleaved (re, im) with one
    small matrix product; backward recomputes the planes with differentiable operations.
    """

    @staticmethod
    def forward(ctx, xyz: torch.Tensor, ls: tuple[int, ...]):
        ctx.ls = ls
        ctx.save_for_backward(xyz)
        u, _, nonzero = _rows(xyz, differentiable=False)
        lmax = max(ls)
        A, (C, S) = _legendre(u[2], None, lmax), _powers(u[0], u[1], lmax)
        mask = nonzero.to(xyz.dtype)
        outs = []
        for l in ls:
            P = torch.empty(2 * l + 1, xyz.shape[0], dtype=xyz.dtype, device=xyz.device)
            _planes(P, l, A, C, S, mask)
            out = torch.mm(P.T, _expansion(l, xyz))
            outs.append(torch.view_as_complex(out.view(-1, 2 * l + 1, 2)))
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        (xyz,) = ctx.saved_tensors
        u, inv_r, _ = _rows(xyz, differentiable=torch.is_grad_enabled())
        rows = _grad_rows(u, ctx.ls, grads)
        if all(r is None for r in rows):
            return torch.zeros_like(xyz), None
        g = torch.stack([torch.zeros_like(inv_r) if r is None else r for r in rows])
        g = torch.addcmul(g * inv_r, u, (g * u).sum(0) * inv_r, value=-1.0)
        return g.T, None


def _flatten(xyz: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(xyz, torch.Tensor) or xyz.dtype not in _COMPLEX:
        got = xyz.dtype if isinstance(xyz, torch.Tensor) else type(xyz).__name__
        raise TypeError(f"{name} expects a float32 or float64 tensor of shape (..., 3), got {got}")
    if xyz.ndim == 0 or xyz.shape[-1] != 3:
        raise ValueError(f"{name} expects xyz of shape (..., 3), got {tuple(xyz.shape)}")
    return xyz.reshape(-1, 3)


def _check_length(xyz: torch.Tensor, flat: torch.Tensor, name: str) -> None:
    """Every vector finite with a finite ``|r|^2`` (see the module docstring)."""
    bad = ~torch.isfinite(torch.addcmul(torch.addcmul(flat[:, 0] ** 2, flat[:, 1], flat[:, 1]), flat[:, 2], flat[:, 2]))
    if not bad.any():
        return
    i = int(bad.nonzero()[0, 0])
    index = tuple(int(k) for k in np.unravel_index(i, xyz.shape[:-1]))
    limit = math.sqrt(torch.finfo(flat.dtype).max)
    dtype = str(flat.dtype).replace("torch.", "")
    problem = ("is not finite" if not torch.isfinite(flat[i]).all()
               else f"has |r|^2 that overflows {dtype}")
    raise ValueError(f"{name}: vector {index} = {flat[i].tolist()} {problem}; expected finite vectors with "
                     f"|r| < {limit:.2g} (Y^l depends only on the direction: scale the vectors down)")


def _check_degrees(ls, name: str) -> tuple[int, ...]:
    for l in ls:
        check_lm(l, None, "l")
    if not ls:
        raise ValueError(f"{name} needs at least one degree l")
    return tuple(int(l) for l in ls)


def spherical_harmonics_all(lmax: int, xyz: torch.Tensor, normalize: bool = True) -> dict[int, torch.Tensor]:
    """``{l: Y^l(xyz)}`` for l = 0..lmax in one recurrence pass; each complex (..., 2l+1).

    With ``normalize=False`` the solid harmonics ``r^l Y^l`` are returned instead.
    """
    check_lm(lmax, None, "lmax")
    return dict(zip(range(lmax + 1), _evaluate(tuple(range(lmax + 1)), xyz, normalize, "spherical_harmonics_all")))


def spherical_harmonics(l: int, xyz: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Complex ``Y^l(xyz / |xyz|)``, shape (..., 2l+1), index m + l (orthonormal, Condon–Shortley).

    With ``normalize=False`` this is the solid harmonic ``r^l Y^l(xyz)`` (see :func:`solid_harmonics`).

    >>> import torch
    >>> spherical_harmonics(1, torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))
    tensor([0.0000+0.j, 0.4886+0.j, 0.0000+0.j], dtype=torch.complex128)
    """
    return _evaluate((l,), xyz, normalize, "spherical_harmonics")[0]


def solid_harmonics(l: int, xyz: torch.Tensor) -> torch.Tensor:
    """Regular solid harmonics ``r^l Y^l(xyz)``: homogeneous polynomials of degree l, complex (..., 2l+1)."""
    return _evaluate((l,), xyz, False, "solid_harmonics")[0]


def _evaluate(ls: tuple[int, ...], xyz: torch.Tensor, normalize: bool, name: str) -> list[torch.Tensor]:
    ls = _check_degrees(ls, name)
    flat = _flatten(xyz, name)
    if normalize:
        _check_length(xyz, flat, name)
        outs = _SphericalHarmonics.apply(flat, ls)
    else:
        outs = _solid(flat, ls)
    return [o.reshape(*xyz.shape[:-1], 2 * l + 1) for l, o in zip(ls, outs)]


def _solid(xyz: torch.Tensor, ls: tuple[int, ...]) -> list[torch.Tensor]:
    """Solid harmonics by the homogeneous recurrence, differentiated by plain autograd."""
    x, y, z = xyz.unbind(-1)
    lmax = max(ls)
    A = _legendre(z, x * x + y * y + z * z, lmax)
    C, S = _powers(x, y, lmax)
    zeros = torch.zeros_like(x)
    outs = []
    for l in ls:
        re = [None] * (2 * l + 1)
        im = [None] * (2 * l + 1)
        re[l], im[l] = A[l][0] + zeros, zeros
        for m in range(1, l + 1):
            sign = -1.0 if m % 2 else 1.0
            re[l + m], im[l + m] = C[m] * A[l][m] + zeros, S[m] * A[l][m] + zeros
            re[l - m], im[l - m] = sign * re[l + m], -sign * im[l + m]
        outs.append(torch.complex(torch.stack(re, -1), torch.stack(im, -1)))
    return outs
