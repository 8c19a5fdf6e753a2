"""Geometric inputs of a network as engine ops: spherical harmonics of positions, distances and
radial functions.

``sph(xyz, lmax)`` is a primitive: its forward is :func:`so3net.sph.spherical_harmonics_all` and
its derivative is explicit. With ``R^l = r^l Y^l`` the (harmonic, homogeneous) solid harmonics,

    d R^l_m / d x_j = G^l[j, m, m'] R^{l-1}_{m'},
    G^l[j, m, m'] = c_l sum_mu <l-1 m'; 1 mu | l m> Y^1_mu(e_j),   c_l = sqrt(4 pi l (2l+1) / 3),

(the gradient is a rank-1 tensor operator, so it maps degree l to l-1 through a CG block; c_l
follows from Euler's identity x . grad R^l = l R^l), hence for ``Y^l = R^l / r^l``

    d Y^l / d x_j = (G^l[j] Y^{l-1} - l (x_j / r) Y^l) / r.

The backward evaluates this with engine ops — including ``sph`` itself — so it is differentiable
again, to any order. At ``r = 0`` the gradient is taken as 0, as :mod:`so3net.sph` does.

``cosine_cutoff`` is written once, on tensors (:func:`cosine_cutoff_values`, which
``so3net.nn.cosine_cutoff`` is); the engine op evaluates that function through
:func:`so3net.graph.torch_fn.torch_fn`.
"""
from __future__ import annotations

import math
from functools import lru_cache, partial

import numpy as np
import torch

from ..cg import cg_block
from ..types import SO3vec
from .engine import Function, Variable, deferrable
from .ops import conj, exp, index, matmul, real, reshape, sqrt, sum as _sum
from .so3ops import part
from .torch_fn import torch_fn

__all__ = ["sph", "spherical_harmonics", "distance", "gaussian_rbf", "cosine_cutoff", "cosine_cutoff_values"]

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


@lru_cache(maxsize=None)
def _gradient_table(l: int) -> np.ndarray:
    """``G^l`` arranged as ``(2l-1, 3 * (2l+1))`` so that ``Y^{l-1} @ table`` gives ``[.., j, m]``."""
    from .. import sph as _sph  # imported when first used
    e = torch.eye(3, dtype=torch.float64)
    Y1 = _sph.spherical_harmonics(1, e).numpy()             # [j, mu] = Y^1_mu(e_j)
    C = cg_block(l - 1, 1, l)                                 # [m', mu, m]
    G = math.sqrt(4 * math.pi * l * (2 * l + 1) / 3) * np.einsum("pum,ju->pjm", C, Y1)
    return np.ascontiguousarray(G.reshape(2 * l - 1, 3 * (2 * l + 1)))


class SphericalHarmonics(Function):
    """``Y^l(xyz / |xyz|)`` for l = 0..lmax as an SO3vec with one fragment per l: part l has shape
    ``(..., 2l+1, 1)``. ``xyz``: real ``(..., 3)``; complex basis (Condon–Shortley)."""
    def forward(self, xyz, lmax):
        from .. import sph as _sph
        self.lmax = lmax
        Y = _sph.spherical_harmonics_all(lmax, xyz)
        return SO3vec({l: y[..., None] for l, y in Y.items()})

    def backward(self, g):
        return (_sph_vjp(self.parents[0], g, self.lmax),)


def _sph_vjp(xyz: Variable, g: Variable, lmax: int) -> Variable:
    """``Re sum_l sum_m conj(g^l_m) dY^l_m/dx`` with the formula of the module docstring."""
    r2 = _sum(xyz * xyz, -1, keepdim=True)
    mask = Variable((r2.value > 0).to(r2.value.dtype))
    inv_r = (r2 * mask + (1 - mask)) ** -0.5 * mask
    u = xyz * inv_r
    Y = sph(xyz, lmax)
    total = None
    for l in range(1, lmax + 1):
        gl = conj(index(part(g, l), (..., 0)))                          # (..., 2l+1)
        table = Variable(torch.as_tensor(_gradient_table(l), dtype=_COMPLEX[xyz.value.dtype], device=xyz.value.device))
        Yp = index(part(Y, l - 1), (..., 0))                               # (..., 2l-1)
        T = reshape(matmul(reshape(Yp, (-1, 2 * l - 1)), table), tuple(Yp.value.shape[:-1]) + (3, 2 * l + 1))
        t = _sum(T * reshape(gl, tuple(gl.value.shape[:-1]) + (1, 2 * l + 1)), -1)       # (..., 3)
        radial = _sum(gl * index(part(Y, l), (..., 0)), -1, keepdim=True)               # (..., 1)
        term = t - (l * radial) * u
        total = term if total is None else total + term
    if total is None:
        return xyz * 0.0
    return real(total) * inv_r


def sph(xyz, lmax: int) -> Variable:
    """Spherical harmonics ``Y^0..Y^lmax`` of the directions of ``xyz`` as an SO3vec Variable of
    type ``(1, 1, ..., 1)`` (one fragment per l); differentiable to any order in ``xyz``."""
    return SphericalHarmonics.apply(xyz, lmax=int(lmax))


@deferrable
def spherical_harmonics(l: int, xyz) -> Variable:
    """``Y^l(xyz / |xyz|)``: a complex tensor Variable ``(..., 2l+1)`` (see :func:`sph`)."""
    return index(part(sph(xyz, l), l), (..., 0))


@deferrable
def distance(xyz, eps: float = 0.0) -> Variable:
    """``|xyz|`` over the last axis, ``(...,)``; ``eps`` > 0 keeps the gradient finite at 0."""
    return sqrt(_sum(xyz * xyz, -1) + eps) if eps else sqrt(_sum(xyz * xyz, -1))


@deferrable
def gaussian_rbf(r, centers: torch.Tensor, width: float) -> Variable:
    """Radial basis ``exp(-((r - c_k) / width)^2)``: ``r (...,)`` -> ``(..., K)`` for centers ``(K,)``."""
    d = (reshape(r, tuple(r.value.shape) + (1,)) - Variable(centers)) * (1.0 / width)
    return exp(-(d * d))


def cosine_cutoff_values(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``(1 + cos(pi r / cutoff)) / 2`` for ``r < cutoff``, else 0 (C¹ at the cutoff), on tensors."""
    return torch.where(r < cutoff, 0.5 * (torch.cos(r * (math.pi / cutoff)) + 1), torch.zeros_like(r))


def cosine_cutoff(r, cutoff: float) -> Variable:
    """:func:`cosine_cutoff_values` of a Variable ``r`` as an engine op (differentiable to any order)."""
    return torch_fn(partial(cosine_cutoff_values, cutoff=float(cutoff)), r)
