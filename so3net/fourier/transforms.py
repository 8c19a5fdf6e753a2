"""Fourier transforms on S² and SO(3): separable (FFT over the azimuthal angles, then Wigner-d).

Conventions (fixed in DESIGN.md "Functions and their Fourier components"):

- Sphere: ``F^l_m = ∫ f(x) Y^l_m(x) dx`` and ``f(x) = Σ_{l,m} F^l_m conj(Y^l_m(x))``, with the
  orthonormal Condon–Shortley harmonics ``Y^l_m(θ, φ) = sqrt((2l+1)/4π) e^{imφ} d^l_{m0}(θ)``
  (equal to scipy's ``sph_harm_y(l, m, θ, φ)``). ``F^l`` is an SO3part ``(b..., 2l+1, 1)``.
- Group: ``F^l = ∫ f(R) D^l(R) dR`` (Haar measure of mass 1) and
  ``f(R) = Σ_l (2l+1) Σ_{m,m'} F^l_{mm'} conj(D^l_{mm'}(R))``, with so3net's
  ``D^l_{mm'}(α, β, γ) = e^{imα} d^l_{mm'}(β) e^{im'γ}``. ``F^l`` is an SO3part
  ``(b..., 2l+1, 2l+1)``: rows m, fragments m'.
- Rotating a function, ``f(t⁻¹ ·)``, maps ``F^l`` to ``D^l(t) F^l`` in both cases.

Values are ``(..., N)`` in the grid's layout (see :mod:`so3net.fourier.grids`); forward accepts real
or complex values, inverse returns complex values (``sphere_inverse(..., real=True)``: the real
part). float32 data gives complex64 coefficients, float64 gives complex128. Work: O(B³) per
sphere function and O(B⁴) per group function (the semi-naive algorithms), no dense grid matrix.
"""
from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np
import torch

from ..types import SO3type, SO3vec
from ..wigner import matrix_to_euler, wigner_D, wigner_d
from ._dtable import wigner_d_rows
from ._sphere_plan import TINY, sphere_plan
from ._stage import ModeStage
from ._vec import complex_dtype, parts_of, real_dtype
from .grids import SO3Grid, SphereGrid

__all__ = ["sphere_forward", "sphere_inverse", "so3_forward", "so3_inverse", "sphere_evaluate",
           "so3_evaluate"]


def sphere_forward(values: torch.Tensor, grid: SphereGrid, lmax: int):
    """Spherical-harmonic coefficients ``F^l = ∫ f Y^l`` for ``l <= lmax``, an SO3vec with parts
    ``(..., 2l+1, 1)``, of functions sampled on ``grid`` as ``values (..., N)``. Exact for
    band-limited functions when ``lmax < grid.bandwidth``. The work is done by
    :mod:`so3net.fourier._sphere_plan`: a DFT or FFT over φ, then one Wigner-d matmul over θ."""
    _check_grid(grid, SphereGrid, "sphere_forward")
    _check_lmax(lmax, grid)
    batch, x = _flatten_values(values, grid, "sphere_forward")
    if x.shape[0] == 0:  # MKL's FFT rejects empty batches
        return _vec(x.new_zeros(0, _total(lmax, False), dtype=complex_dtype(x.dtype)), batch, lmax, False)
    flat = sphere_plan(grid, lmax, real_dtype(x.dtype), x.device).forward(x)
    return _vec(flat, batch, lmax, False)


def sphere_inverse(coeffs, grid: SphereGrid, real: bool = False) -> torch.Tensor:
    """Values ``f(x) = Σ F^l_m conj(Y^l_m(x))`` on ``grid``, complex ``(..., N)``, from sphere
    coefficients (SO3vec or ``{l: (..., 2l+1, 1)}``; missing degrees are zero).

    ``real=True`` returns ``Re f`` as a real tensor, computed without the imaginary part (see
    :mod:`so3net.fourier._sphere_plan`).
    """
    _check_grid(grid, SphereGrid, "sphere_inverse")
    batch, flat, lmax = _join(coeffs, grid, group=False)
    if flat.shape[0] == 0:
        return flat.new_zeros(*batch, grid.size, dtype=flat.real.dtype if real else flat.dtype)
    plan = sphere_plan(grid, lmax, real_dtype(flat.dtype), flat.device)
    return plan.inverse(flat, bool(real)).reshape(*batch, grid.size)


def so3_forward(values: torch.Tensor, grid: SO3Grid, lmax: int):
    """Fourier matrices ``F^l = ∫ f(R) D^l(R) dR`` for ``l <= lmax``, an SO3vec with parts
    ``(..., 2l+1, 2l+1)`` (rows m, fragments m'), of functions sampled on the SO(3) ``grid`` as
    ``values (..., N)``. Exact for band-limited functions when ``lmax < grid.bandwidth``."""
    _check_grid(grid, SO3Grid, "so3_forward")
    _check_lmax(lmax, grid)
    batch, x = _flatten_values(values, grid, "so3_forward")
    if x.shape[0] == 0:
        empty = x.new_zeros(0, _total(lmax, True), dtype=complex_dtype(x.dtype))
        return _vec(empty, batch, lmax, True)
    g = torch.fft.ifft2(x.reshape(-1, *grid.shape).to(complex_dtype(x.dtype)), dim=(1, 3))
    g = g.permute(1, 3, 2, 0).reshape(-1, grid.shape[1], g.shape[0])  # (alpha * gamma, beta, b)
    flat = _so3_stage(grid, lmax, real_dtype(x.dtype), x.device).forward(g)
    return _vec(flat, batch, lmax, group=True)


def so3_inverse(coeffs, grid: SO3Grid) -> torch.Tensor:
    """Values ``f(R) = Σ_l (2l+1) Σ F^l_{mm'} conj(D^l_{mm'}(R))`` on the SO(3) ``grid``, complex
    ``(..., N)``, from group coefficients (SO3vec or ``{l: (..., 2l+1, 2l+1)}``)."""
    _check_grid(grid, SO3Grid, "so3_inverse")
    batch, flat, lmax = _join(coeffs, grid, group=True)
    if flat.shape[0] == 0:
        return flat.new_zeros(*batch, grid.size)
    h = _so3_stage(grid, lmax, real_dtype(flat.dtype), flat.device).inverse(flat)
    na, nb, ng = grid.shape
    h = torch.fft.fft2(h.reshape(-1, nb, na, ng), dim=(2, 3))
    return h.permute(0, 2, 1, 3).reshape(*batch, grid.size)


def sphere_evaluate(coeffs, xyz: torch.Tensor) -> torch.Tensor:
    """Direct evaluation ``f(x) = Σ F^l_m conj(Y^l_m(x))`` at points ``xyz (P, 3)`` -> ``(..., P)``.

    O(P · lmax²): a reference for checks and off-grid points, not a transform."""
    parts = parts_of(coeffs, "sphere_evaluate coefficients")
    xyz = torch.as_tensor(xyz, dtype=torch.float64)
    theta = torch.atan2(torch.hypot(xyz[..., 0], xyz[..., 1]), xyz[..., 2])
    phi = torch.atan2(xyz[..., 1], xyz[..., 0])
    out = 0
    for l, p in parts.items():
        _check_fragments(p, l, 1, "sphere_evaluate")
        y = _harmonics(l, theta, phi).to(device=p.device)
        out = out + torch.einsum("...m,pm->...p", p[..., 0].to(y.dtype), y.conj())
    return out


def so3_evaluate(coeffs, R: torch.Tensor) -> torch.Tensor:
    """Direct evaluation ``f(R) = Σ_l (2l+1) Σ F^l_{mm'} conj(D^l_{mm'}(R))`` at rotations
    ``R (P, 3, 3)`` -> ``(..., P)``. O(P · lmax³): a reference for checks, not a transform."""
    parts = parts_of(coeffs, "so3_evaluate coefficients")
    euler = matrix_to_euler(torch.as_tensor(R, dtype=torch.float64))
    out = 0
    for l, p in parts.items():
        _check_fragments(p, l, 2 * l + 1, "so3_evaluate")
        D = wigner_D(l, *euler).to(device=p.device)
        out = out + (2 * l + 1) * torch.einsum("...ab,pab->...p", p.to(D.dtype), D.conj())
    return out


def _harmonics(l: int, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``Y^l_m(θ, φ)``, complex128 ``(..., 2l+1)``, from so3net's Wigner d."""
    m = torch.arange(-l, l + 1, dtype=torch.float64)
    d = wigner_d(l, theta.to(torch.float64))[..., :, l]
    return math.sqrt((2 * l + 1) / (4 * math.pi)) * torch.exp(1j * m * phi[..., None]) * d


# ----------------------------------------------------------------------------- tables

@lru_cache(maxsize=8)
def _so3_stage(grid: SO3Grid, lmax: int, dtype: torch.dtype, device) -> ModeStage:
    """The float64 stage cast to ``dtype``; float32 tables get entries below ``TINY`` zeroed (the
    cast made new tensors), so no matmul runs into subnormal arithmetic."""
    stage = _so3_stage64(grid, lmax).to(dtype, device)
    if dtype == torch.float32:
        for group in stage.groups:
            for table in (group.fwd, group.inv):
                table.masked_fill_(table.abs() < TINY, 0.0)
    return stage


@lru_cache(maxsize=8)
def _so3_stage64(grid: SO3Grid, lmax: int) -> ModeStage:
    """Modes (m, m'), FFT column (m mod n_alpha) n_gamma + (m' mod n_gamma); coefficient of
    (l, m, m') at Σ_{l'<l} (2l'+1)² + (m+l)(2l+1) + m'+l."""
    L = lmax
    na, nb, ng = grid.shape
    m = np.repeat(np.arange(-L, L + 1), 2 * L + 1)
    mp = np.tile(np.arange(-L, L + 1), 2 * L + 1)
    ls = np.arange(L + 1)
    offset = (4 * ls ** 3 - ls) // 3
    lmin = np.maximum(np.abs(m), np.abs(mp))
    flat = offset[None, :] + (m[:, None] + ls) * (2 * ls + 1) + mp[:, None] + ls
    flat = np.where(ls[None, :] >= lmin[:, None], flat, -1)
    rows = wigner_d_rows(L, grid.beta.numpy(), m, mp)
    fwd_scale = np.repeat(grid.beta_weights.numpy()[:, None], L + 1, 1)
    cols = (m % na) * ng + mp % ng
    return ModeStage.build(lmin, cols, na * ng, flat, _total(L, True), rows, fwd_scale, 2.0 * ls + 1)


# ----------------------------------------------------------------------------- checks and layout

def _check_grid(grid, cls, fn: str) -> None:
    if not isinstance(grid, cls):
        maker = "sphere_grid(bandwidth)" if cls is SphereGrid else "so3_grid(bandwidth)"
        raise TypeError(f"{fn} expects a {cls.__name__} from {maker}, got {type(grid).__name__}")


def _check_lmax(lmax, grid) -> None:
    if not isinstance(lmax, (int, np.integer)) or isinstance(lmax, bool) or not 0 <= lmax < grid.bandwidth:
        raise ValueError(f"lmax must be an integer with 0 <= lmax <= bandwidth - 1 = {grid.bandwidth - 1} "
                         f"for {grid!r}, got {lmax!r}")


def _check_fragments(p: torch.Tensor, l: int, n: int, fn: str) -> None:
    if p.shape[-1] != n:
        kind = "one fragment per l" if n == 1 else "2l+1 fragments per l"
        raise ValueError(f"{fn}: part l={l} must have shape (..., {2 * l + 1}, {n}) ({kind}), got {tuple(p.shape)}")


def _flatten_values(values: torch.Tensor, grid, fn: str):
    if not isinstance(values, torch.Tensor) or values.dim() < 1 or values.shape[-1] != grid.size:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"{fn} expects values of shape (..., N) with N = {grid.size} for {grid!r}, got {shape}")
    complex_dtype(values.dtype)
    return values.shape[:-1], (values if values.dim() == 2 else values.reshape(-1, grid.size))


def _total(lmax: int, group: bool) -> int:
    return (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3 if group else (lmax + 1) ** 2


def _vec(flat: torch.Tensor, batch, lmax: int, group: bool) -> SO3vec:
    """Flat ``(b, total)`` coefficients -> the SO3vec stored in them, type (1, 3, 5, ...) for group
    coefficients or (1, ..., 1) for sphere coefficients (valid by construction: no per-part checks,
    which cost more than a small transform)."""
    packed = flat if flat.shape[:-1] == batch else flat.reshape(*batch, flat.shape[-1])
    return SO3vec._wrap(packed, _coeff_type(lmax, group), "complex")


@cache
def _coeff_type(lmax: int, group: bool) -> SO3type:
    return SO3type(2 * l + 1 if group else 1 for l in range(lmax + 1))


def _join(coeffs, grid, group: bool):
    """Flatten coefficients to ``(b, total)`` complex in the stage's layout (missing degrees are zero); an
    SO3vec of the coefficient type gives its packed tensor itself."""
    fn = "so3_inverse" if group else "sphere_inverse"
    if isinstance(coeffs, SO3vec) and coeffs.basis == "complex" and coeffs.tau == _coeff_type(coeffs.maxl, group):
        lmax = coeffs.maxl                           # the packed layout is the flat layout: no copy
        _check_lmax(lmax, grid)
        flat = coeffs.packed().reshape(-1, _total(lmax, group)).resolve_conj().resolve_neg()
        return coeffs.batch, flat, lmax
    parts = parts_of(coeffs, f"{fn} coefficients")
    lmax = max(parts)
    _check_lmax(lmax, grid)
    batch = torch.broadcast_shapes(*(p.shape[:-2] for p in parts.values()))
    ref = parts[lmax]
    chunks = []
    for l in range(lmax + 1):
        n = 2 * l + 1 if group else 1
        p = parts.get(l)
        if p is None:
            p = ref.new_zeros(*batch, 2 * l + 1, n)
        _check_fragments(p, l, n, fn)
        chunks.append((p if p.shape[:-2] == batch else p.expand(*batch, 2 * l + 1, n)).reshape(*batch, (2 * l + 1) * n))
    flat = torch.cat(chunks, -1).reshape(-1, _total(lmax, group))
    return batch, flat.to(complex_dtype(flat.dtype)), lmax
