"""Sampling grids with exact quadrature on the sphere S² and on the rotation group SO(3).

Bandwidth ``B`` means: the grid integrates exactly every product of two functions whose Fourier
components vanish for ``l >= B``, so the transforms are exact for ``lmax <= B - 1``.

Sphere grids are products ``theta × phi`` with points ``x = (sin θ cos φ, sin θ sin φ, cos θ)``;
values are stored ``(..., n_theta * n_phi)`` with theta the slow index. Weights are the full
measure ``dx = sin θ dθ dφ`` (they sum to 4π).

- ``"gauss-legendre"``: ``cos θ_j`` are the ``B`` Gauss–Legendre nodes (θ increasing),
  ``φ_k = 2π k / (2B)``, ``k < 2B``.
- ``"equiangular"``: Driscoll–Healy in the pole-free form of Kostelec & Rockmore (the grid of
  SOFT, and of e3nn's ``s2_grid`` with ``res = (2B, 2B)``): ``θ_j = π (2j + 1) / (4B)``,
  ``j < 2B``, ``φ_k = 2π k / (2B)``, with the weights of :func:`driscoll_healy_weights`.

The SO(3) grid (SOFT) is ``α_k = 2π k / (2B)``, ``β_j = π (2j + 1) / (4B)``,
``γ_k' = 2π k' / (2B)``, the rotation ``R = Rz(α) Ry(β) Rz(γ)`` (so3net's z-y-z convention);
values are stored ``(..., n_alpha * n_beta * n_gamma)`` with alpha slowest. Weights are the
normalised Haar measure (they sum to 1): ``w = w_β(j) / (2B)²``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..wigner import euler_to_matrix

__all__ = ["SphereGrid", "SO3Grid", "sphere_grid", "so3_grid", "driscoll_healy_weights"]

SPHERE_KINDS = ("gauss-legendre", "equiangular")


def driscoll_healy_weights(bandwidth: int) -> np.ndarray:
    """Weights ``w_j`` for ``θ_j = π (2j+1) / (4B)``, ``j < 2B``, with
    ``Σ_j w_j p(cos θ_j) = ∫_0^π p(cos θ) sin θ dθ`` for every polynomial of degree < 2B:

        w_j = (2 / B) sin θ_j Σ_{k<B} sin((2k+1) θ_j) / (2k+1)      (Σ_j w_j = 2).
    """
    _check_bandwidth(bandwidth)
    theta = np.pi * (2 * np.arange(2 * bandwidth) + 1) / (4 * bandwidth)
    k = np.arange(bandwidth)
    series = (np.sin(np.outer(theta, 2 * k + 1)) / (2 * k + 1)).sum(1)
    return (2.0 / bandwidth) * np.sin(theta) * series


@dataclass(frozen=True, eq=False)
class SphereGrid:
    """Product grid on S² (see the module docstring for the layout).

    ``theta (n_theta,)``, ``phi (n_phi,)``, ``theta_weights (n_theta,)`` (sum 2),
    ``xyz (N, 3)``, ``weights (N,)`` (sum 4π); all float64 on the CPU.
    """
    bandwidth: int
    kind: str
    theta: torch.Tensor
    phi: torch.Tensor
    theta_weights: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return (self.theta.numel(), self.phi.numel())

    @property
    def size(self) -> int:
        return self.theta.numel() * self.phi.numel()

    @property
    def xyz(self) -> torch.Tensor:
        t, p = torch.meshgrid(self.theta, self.phi, indexing="ij")
        return torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1).reshape(-1, 3)

    @property
    def weights(self) -> torch.Tensor:
        w = self.theta_weights[:, None] * (2 * math.pi / self.phi.numel())
        return w.expand(self.shape).reshape(-1)

    def __repr__(self) -> str:
        return f"SphereGrid(bandwidth={self.bandwidth}, kind={self.kind!r}, shape={self.shape})"


@dataclass(frozen=True, eq=False)
class SO3Grid:
    """SOFT equiangular grid on SO(3) (see the module docstring for the layout).

    ``alpha (2B,)``, ``beta (2B,)``, ``gamma (2B,)``, ``beta_weights (2B,)`` (sum 1),
    ``R (N, 3, 3)``, ``weights (N,)`` (sum 1); all float64 on the CPU.
    """
    bandwidth: int
    alpha: torch.Tensor
    beta: torch.Tensor
    gamma: torch.Tensor
    beta_weights: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.alpha.numel(), self.beta.numel(), self.gamma.numel())

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def euler(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Euler angles ``(alpha, beta, gamma)`` of every grid point, each ``(N,)``."""
        a, b, g = torch.meshgrid(self.alpha, self.beta, self.gamma, indexing="ij")
        return a.reshape(-1), b.reshape(-1), g.reshape(-1)

    @property
    def R(self) -> torch.Tensor:
        return euler_to_matrix(*self.euler)

    @property
    def weights(self) -> torch.Tensor:
        w = self.beta_weights[None, :, None] / (self.alpha.numel() * self.gamma.numel())
        return w.expand(self.shape).reshape(-1)

    def __repr__(self) -> str:
        return f"SO3Grid(bandwidth={self.bandwidth}, shape={self.shape})"


@lru_cache(maxsize=None)
def sphere_grid(bandwidth: int, kind: str = "gauss-legendre") -> SphereGrid:
    """The grid on S² of bandwidth ``B`` (exact transforms for ``lmax <= B - 1``).

    ``kind="gauss-legendre"`` has ``B × 2B`` points, ``kind="equiangular"`` (Driscoll–Healy)
    ``2B × 2B`` points; see the module docstring for nodes, weights and value layout.
    """
    _check_bandwidth(bandwidth)
    if kind not in SPHERE_KINDS:
        raise ValueError(f"sphere_grid kind must be one of {SPHERE_KINDS}, got {kind!r}")
    if kind == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(bandwidth)
        theta, tw = np.arccos(x[::-1]), w[::-1]
    else:
        theta = np.pi * (2 * np.arange(2 * bandwidth) + 1) / (4 * bandwidth)
        tw = driscoll_healy_weights(bandwidth)
    phi = 2 * np.pi * np.arange(2 * bandwidth) / (2 * bandwidth)
    t = lambda a: torch.tensor(np.array(a, copy=True), dtype=torch.float64)
    return SphereGrid(bandwidth, kind, t(theta), t(phi), t(tw))


@lru_cache(maxsize=None)
def so3_grid(bandwidth: int) -> SO3Grid:
    """The SOFT grid on SO(3) of bandwidth ``B``: ``(2B)³`` points, exact for ``lmax <= B - 1``."""
    _check_bandwidth(bandwidth)
    n = 2 * bandwidth
    angle = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    beta = torch.tensor(np.pi * (2 * np.arange(n) + 1) / (4 * bandwidth), dtype=torch.float64)
    bw = torch.tensor(driscoll_healy_weights(bandwidth) / 2, dtype=torch.float64)
    return SO3Grid(bandwidth, angle, beta, angle.clone(), bw)


def _check_bandwidth(bandwidth) -> None:
    if not isinstance(bandwidth, (int, np.integer)) or isinstance(bandwidth, bool) or bandwidth < 1:
        raise ValueError(f"bandwidth must be a positive integer (exact for l < bandwidth), got {bandwidth!r}")
