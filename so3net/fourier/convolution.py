"""Convolution, correlation and pointwise products in Fourier space (the talk's sections 2-3).

Conventions are those of :mod:`so3net.fourier.transforms`: sphere coefficients
``F^l = ∫ f Y^l`` (parts ``(..., 2l+1, 1)``), group coefficients ``F^l = ∫ f(R) D^l(R) dR``
(parts ``(..., 2l+1, 2l+1)``, Haar mass 1), and ``f(t⁻¹ ·)`` has coefficients ``D^l(t) F^l``.
Every function here is equivariant in its first argument: rotating ``f`` rotates the result.
Batch dimensions broadcast between the two arguments.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..cg import cg_sparse
from ._vec import make_vec, parts_of

__all__ = ["so3_convolve", "sphere_correlate", "sphere_convolve", "Fproduct"]


def so3_convolve(F, G):
    """Group convolution ``(f ∗ g)(u) = ∫ f(u v⁻¹) g(v) dv`` on SO(3): components ``F^l G^l``.

    ``F``, ``G``: group coefficients (SO3vec or ``{l: (..., 2l+1, 2l+1)}``); degrees present in
    only one of them give zero. Returns an SO3vec with parts ``(..., 2l+1, 2l+1)``.
    """
    f, g = _group_parts(F, "so3_convolve F"), _group_parts(G, "so3_convolve G")
    return _vec({l: f[l] @ g[l] for l in f if l in g}, "so3_convolve")


def sphere_correlate(F, G):
    """Sphere to group (the talk's Case 1, G/H -> G): ``h(R) = ∫_{S²} f(y) conj(g(R⁻¹ y)) dy``.

    ``h`` is the overlap of ``f`` with the filter ``g`` turned by ``R`` (Cohen et al.'s S²
    correlation; ``conj`` makes it an inner product and disappears for real filters). Its group
    coefficients are the outer products ``H^l = F^l (G^l)^† / (2l+1)`` of the sphere coefficients:
    the talk's ``f↑ĝ↑`` product of a single column (f lifted by ``f(Rẑ)``) and a single row.
    Rotating ``f`` by ``t`` maps ``h`` to ``h(t⁻¹ ·)``. Returns parts ``(..., 2l+1, 2l+1)``.
    """
    f, g = _sphere_parts(F, "sphere_correlate F"), _sphere_parts(G, "sphere_correlate G")
    return _vec({l: f[l] @ g[l].conj_physical().transpose(-1, -2) / (2 * l + 1) for l in f if l in g}, "sphere_correlate")


def sphere_convolve(F, G):
    """Sphere to sphere with a zonal filter (the talk's Case 2, G/H -> G/K):
    ``h(x) = ∫_{S²} f(y) conj(g(R_x⁻¹ y)) dy`` for any ``R_x`` with ``R_x ẑ = x``.

    ``g`` must be zonal (``g(x)`` depends on ``x·ẑ`` only, i.e. ``G^l_m = 0`` for ``m ≠ 0``), so
    ``h(x) = ∫ f(y) conj(g̃(x·y)) dy`` and (Funk–Hecke) ``H^l = sqrt(4π/(2l+1)) conj(G^l_0) F^l``.
    A non-zonal ``G`` raises ValueError. Returns sphere coefficients ``(..., 2l+1, 1)``.
    """
    f, g = _sphere_parts(F, "sphere_convolve F"), _sphere_parts(G, "sphere_convolve G")
    _check_zonal(g)
    out = {l: math.sqrt(4 * math.pi / (2 * l + 1)) * g[l][..., l:l + 1, :].conj_physical() * f[l] for l in f if l in g}
    return _vec(out, "sphere_convolve")


def Fproduct(F, G, lmax: int | None = None):
    """Group coefficients of the pointwise product ``h(R) = f(R) g(R)`` (the talk's
    "h = f², ĥ = f̂ ⋆ f̂"), for ``l <= lmax`` (default: the full band ``lmax_F + lmax_G``).

    From ``(D^{l1} ⊗ D^{l2}) C = C D^l`` and the orthogonality of the real CG matrix ``C``,

        D^{l1}_{ab}(R) D^{l2}_{cd}(R) = Σ_l ⟨l1 a; l2 c | l a+c⟩ ⟨l1 b; l2 d | l b+d⟩ D^l_{a+c, b+d}(R),

    and with Schur orthogonality ``∫ D^l_{mn} conj(D^{l'}_{m'n'}) = δ.../(2l+1)`` this gives

        H^l_{mn} = Σ_{l1,l2} (2l1+1)(2l2+1)/(2l+1) Σ_{a+c=m, b+d=n}
                   ⟨l1 a; l2 c | l m⟩ ⟨l1 b; l2 d | l n⟩ F^{l1}_{ab} G^{l2}_{cd},

    i.e. ``H^l = (2l1+1)(2l2+1)/(2l+1) C^T (F^{l1} ⊗ G^{l2}) C`` summed over (l1, l2): a CG product
    on the rows (the library's ``CGproduct``, fragments b·(2l2+1)+d) contracted with CG coefficients
    over the fragments. Sparse: only entries with ``m = m1 + m2`` are touched. ``Fproduct(F, F)``
    (the same object twice, the square) computes each unordered pair (l1, l2) once.
    """
    f, g = _group_parts(F, "Fproduct F"), _group_parts(G, "Fproduct G")
    top = max(f) + max(g)
    lmax = top if lmax is None else lmax
    if not isinstance(lmax, (int, np.integer)) or isinstance(lmax, bool) or lmax < 0:
        raise ValueError(f"Fproduct lmax must be a non-negative integer, got {lmax!r}")
    square = F is G  # f·f: the (l1, l2) and (l2, l1) terms are equal, compute one and double it
    out = {}
    for l1, x in f.items():
        for l2, y in g.items():
            if square and l2 < l1:
                continue
            for l in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                term = _cg_sandwich(x, y, l1, l2, l)
                term = 2 * term if square and l1 != l2 else term
                out[l] = out[l] + term if l in out else term
    ref = next(iter(out.values())) if out else None
    for l in range(lmax + 1):  # degrees no pair reaches are zero
        if l not in out:
            if ref is None:
                x = next(iter(f.values()))
                ref = x.new_zeros(*torch.broadcast_shapes(x.shape[:-2], next(iter(g.values())).shape[:-2]), 1, 1)
            out[l] = ref.new_zeros(*ref.shape[:-2], 2 * l + 1, 2 * l + 1)
    return _vec(out, "Fproduct")


def _cg_sandwich(x: torch.Tensor, y: torch.Tensor, l1: int, l2: int, l: int) -> torch.Tensor:
    """``(2l1+1)(2l2+1)/(2l+1) C^T (x ⊗ y) C`` for one block (l1, l2, l), in two sparse steps.

    Columns: for every n, ``Y[n, a, c] = Σ_{b+d=n} C_{b d n} x[a, b] y[c, d]`` is one small matmul over
    the admissible b (padded with zero coefficients to a common length). Rows:
    ``h[m, n] = Σ_{a+c=m} C_{a c m} Y[n, a, c]`` gathers the CG entries and sums them by m.
    """
    ib, idd, cpad, i1, i2, i, c = _cg_tables(l1, l2, l, x.device, x.real.dtype)
    xg = x[..., :, ib].movedim(-2, -3)                        # (..., 2l+1 [n], 2l1+1 [a], K [b])
    yg = (y[..., :, idd] * cpad).movedim(-3, -1)              # (..., 2l+1 [n], K [b], 2l2+1 [c])
    Y = xg @ yg                                               # (..., n, a, c)
    rows = Y[..., i1, i2] * c                                  # (..., n, E)
    h = rows.new_zeros(*rows.shape[:-1], 2 * l + 1).index_add(-1, i, rows)   # (..., n, m)
    return h.transpose(-1, -2) * ((2 * l1 + 1) * (2 * l2 + 1) / (2 * l + 1))


@lru_cache(maxsize=None)
def _cg_tables(l1: int, l2: int, l: int, device, dtype) -> tuple[torch.Tensor, ...]:
    """Index tables of the block: per n the padded lists of (b, d = n - b, C_{b d n}) and the
    sparse entries (m1 + l1, m2 + l2, m + l, C) of :func:`so3net.cg.cg_sparse`."""
    m1, m2, m, c = cg_sparse(l1, l2, l)
    per_n = [np.nonzero(m == n)[0] for n in range(-l, l + 1)]
    K = max(len(e) for e in per_n)
    ib, idd, cpad = np.zeros((2 * l + 1, K), np.int64), np.zeros((2 * l + 1, K), np.int64), np.zeros((2 * l + 1, K))
    for row, e in enumerate(per_n):
        ib[row, :len(e)], idd[row, :len(e)], cpad[row, :len(e)] = m1[e] + l1, m2[e] + l2, c[e]
    t = lambda a, dt=torch.long: torch.as_tensor(np.array(a), dtype=dt, device=device)
    return (t(ib), t(idd), t(cpad, dtype), t(m1 + l1), t(m2 + l2), t(m + l), t(c, dtype))


def _group_parts(F, what: str) -> dict[int, torch.Tensor]:
    parts = parts_of(F, what)
    for l, p in parts.items():
        if p.shape[-1] != 2 * l + 1:
            raise ValueError(f"{what}: group coefficients need parts (..., 2l+1, 2l+1) = (..., {2 * l + 1}, "
                             f"{2 * l + 1}) for l={l}, got {tuple(p.shape)}")
    return parts


def _sphere_parts(F, what: str) -> dict[int, torch.Tensor]:
    parts = parts_of(F, what)
    for l, p in parts.items():
        if p.shape[-1] != 1:
            raise ValueError(f"{what}: sphere coefficients need parts (..., 2l+1, 1) = (..., {2 * l + 1}, 1) "
                             f"for l={l}, got {tuple(p.shape)}")
    return parts


def _check_zonal(g: dict[int, torch.Tensor]) -> None:
    scale = max(float(p.abs().max()) for p in g.values())
    eps = torch.finfo(next(iter(g.values())).real.dtype).eps
    for l, p in g.items():
        off = torch.cat([p[..., :l, :], p[..., l + 1:, :]], -2)
        if off.numel() and float(off.abs().max()) > 100 * eps * max(scale, 1e-300):
            raise ValueError(f"sphere_convolve needs a zonal filter G (G^l_m = 0 for m != 0); part l={l} has "
                             f"|G^l_m| up to {float(off.abs().max()):.3g} at m != 0 (scale {scale:.3g})")


def _vec(parts: dict[int, torch.Tensor], fn: str):
    if not parts:
        raise ValueError(f"{fn}: the two arguments share no degree l; nothing to compute")
    batch = torch.broadcast_shapes(*(p.shape[:-2] for p in parts.values()))
    return make_vec({l: p.expand(*batch, *p.shape[-2:]) for l, p in parts.items()})
