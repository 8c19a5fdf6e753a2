"""Wigner D matrices, rotations and their parametrisations (batched torch).

Convention (fixed, pinned by tests): Euler angles are z-y-z, ``R = Rz(alpha) Ry(beta) Rz(gamma)``
(active rotations of R^3), and

    D^l_{m' m}(alpha, beta, gamma) = exp(+i m' alpha) d^l_{m' m}(beta) exp(+i m gamma),
    d^l(beta) = exp(-i beta J_y)   (real; the standard small-d matrix).

This is the complex conjugate of the textbook (Sakurai) ``D``; it is chosen so that the
spherical-harmonic vector transforms as ``Y^l(R r) = D^l(R) Y^l(r)``. It follows that
``D(R1) D(R2) = D(R1 R2)``, ``D`` is unitary, and ``CG(D^{l1} x, D^{l2} y) = D^l CG(x, y)``
(the CG coefficients are real). ``D^1(R) = U R U^†`` with ``U`` the fixed unitary of
:func:`so3net.wigner.cartesian_to_spherical`.

Small-d is computed as ``V diag(exp(-i k beta)) V^†`` from the eigenvectors ``V`` of ``J_y``
(float64 ``eigh``, cached per l): unitary to round-off and accurate for large l (tested to l=30).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .cg import check_lm

__all__ = ["wigner_D", "wigner_d", "wigner_D_from_matrix", "random_rotation", "euler_to_matrix",
           "matrix_to_euler", "quaternion_to_matrix", "matrix_to_quaternion", "rotation_z",
           "rotation_y", "cartesian_to_spherical"]


def _as_tensor(x, dtype=torch.float64, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(dtype)
    return torch.as_tensor(x, dtype=dtype, device=device)


@lru_cache(maxsize=None)
def _jy_eig(l: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of J_y in the |l m> basis (m = -l..l): J_y = V diag(k) V^†."""
    m = np.arange(-l, l)  # J+ |m> = sqrt(l(l+1) - m(m+1)) |m+1>
    jp = np.diag(np.sqrt(l * (l + 1) - m * (m + 1.0)), -1).astype(np.complex128)
    jy = (jp - jp.conj().T) / 2j
    k, v = np.linalg.eigh(jy)
    return k, v


def wigner_d(l: int, beta) -> torch.Tensor:
    """Real small-d matrices ``d^l(beta)``, shape ``(..., 2l+1, 2l+1)``, rows m', columns m."""
    check_lm(l)
    beta = _as_tensor(beta)
    k, v = _jy_eig(int(l))
    vt = torch.as_tensor(v, device=beta.device)
    phase = torch.exp(-1j * torch.as_tensor(k, device=beta.device) * beta.to(torch.float64)[..., None])
    d = torch.einsum("ik,...k,jk->...ij", vt, phase, vt.conj()).real
    return d.to(beta.dtype) if beta.dtype in (torch.float32, torch.float64) else d


def wigner_D(l: int, alpha, beta, gamma) -> torch.Tensor:
    """Complex ``D^l(alpha, beta, gamma)`` (z-y-z Euler), shape ``(..., 2l+1, 2l+1)``.

    Output dtype is complex128 for float64 angles, complex64 for float32 angles.
    """
    alpha, beta, gamma = torch.broadcast_tensors(_as_tensor(alpha), _as_tensor(beta), _as_tensor(gamma))
    cdtype = torch.complex64 if beta.dtype == torch.float32 else torch.complex128
    m = torch.arange(-l, l + 1, dtype=torch.float64, device=beta.device)
    ea = torch.exp(1j * m * alpha.to(torch.float64)[..., None])
    eg = torch.exp(1j * m * gamma.to(torch.float64)[..., None])
    d = wigner_d(l, beta.to(torch.float64))
    return (ea[..., :, None] * d * eg[..., None, :]).to(cdtype)


def rotation_z(angle) -> torch.Tensor:
    """Active rotation by ``angle`` about z, shape ``(..., 3, 3)``."""
    a = _as_tensor(angle)
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def rotation_y(angle) -> torch.Tensor:
    """Active rotation by ``angle`` about y, shape ``(..., 3, 3)``."""
    a = _as_tensor(angle)
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def euler_to_matrix(alpha, beta, gamma) -> torch.Tensor:
    """``R = Rz(alpha) Ry(beta) Rz(gamma)``."""
    return rotation_z(alpha) @ rotation_y(beta) @ rotation_z(gamma)


def matrix_to_euler(R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z-y-z Euler angles of rotation matrices, accurate for every beta (gimbal lock included).

    Computed from the unit quaternion (w, x, y, z) of R (Shepperd's method), for which
    ``w = cos(b/2) cos((a+g)/2)``, ``z = cos(b/2) sin((a+g)/2)``, ``x = -sin(b/2) sin((a-g)/2)``,
    ``y = sin(b/2) cos((a-g)/2)``: each angle comes from the components that determine it well, so
    ``euler_to_matrix`` of the result reproduces R to round-off even for beta near 0 or pi. At exact
    gimbal lock (beta = 0 or pi) only ``alpha ± gamma`` is defined: then ``gamma = 0``.
    """
    w, x, y, z = matrix_to_quaternion(R).unbind(-1)
    half_sum = torch.atan2(z, w)      # (alpha + gamma) / 2, undefined at beta = pi
    half_diff = torch.atan2(-x, y)    # (alpha - gamma) / 2, undefined at beta = 0
    s, c = torch.hypot(x, y), torch.hypot(z, w)
    beta = 2 * torch.atan2(s, c)
    half_diff = torch.where(s == 0, half_sum, half_diff)
    half_sum = torch.where(c == 0, half_diff, half_sum)
    alpha, gamma = half_sum + half_diff, half_sum - half_diff
    return _wrap(alpha), beta, _wrap(gamma)


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Angles in (-pi, pi]."""
    return torch.atan2(torch.sin(angle), torch.cos(angle))


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(..., 4)`` as (w, x, y, z) to rotation matrices ``(..., 3, 3)``."""
    q = _as_tensor(q)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternions must have shape (..., 4) as (w, x, y, z), got {tuple(q.shape)}")
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices to unit quaternions (w, x, y, z) with w >= 0 (Shepperd's stable method)."""
    R = _as_tensor(R)
    _check_matrix(R)
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + m00 + m11 + m22, R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1),
        torch.stack([R[..., 2, 1] - R[..., 1, 2], 1 + m00 - m11 - m22, R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0]], -1),
        torch.stack([R[..., 0, 2] - R[..., 2, 0], R[..., 0, 1] + R[..., 1, 0], 1 - m00 + m11 - m22, R[..., 1, 2] + R[..., 2, 1]], -1),
        torch.stack([R[..., 1, 0] - R[..., 0, 1], R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1], 1 - m00 - m11 + m22], -1),
    ], -2)  # row i is proportional to q * 4 q_i
    pick = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1).argmax(-1)
    q = torch.gather(cands, -2, pick[..., None, None].expand(*pick.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


def random_rotation(*batch: int, generator: torch.Generator | None = None, dtype=torch.float64,
                    device=None) -> torch.Tensor:
    """Haar-random rotation matrices of shape ``(*batch, 3, 3)`` (normalised Gaussian quaternions)."""
    q = torch.randn(*batch, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(q)


def wigner_D_from_matrix(l: int, R: torch.Tensor) -> torch.Tensor:
    """``D^l(R)`` for rotation matrices ``R`` of shape ``(..., 3, 3)``."""
    check_lm(l)
    return wigner_D(l, *matrix_to_euler(R))


def cartesian_to_spherical(dtype=torch.complex128) -> torch.Tensor:
    """The fixed unitary U with ``Y^1(r) = sqrt(3/(4 pi)) U r / |r|`` and ``D^1(R) = U R U^†``.

    Rows are m = -1, 0, 1: ``((x - i y)/sqrt2, z, -(x + i y)/sqrt2)`` (Condon–Shortley).
    """
    s = 1 / math.sqrt(2)
    return torch.tensor([[s, -1j * s, 0], [0, 0, 1], [-s, -1j * s, 0]], dtype=dtype)


def rotation_tolerance(dtype: torch.dtype) -> float:
    """How far ``R^T R`` may be from I, and det R from 1: ``max(1e-5, 100 eps)`` of the dtype."""
    return max(1e-5, 100 * torch.finfo(dtype).eps)


def _check_matrix(R: torch.Tensor) -> None:
    """``R (..., 3, 3)`` must hold rotations: finite, ``R^T R = I`` and ``det R = +1`` within
    :func:`rotation_tolerance` (a reflection would otherwise give a wrong D without a word)."""
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3), got {tuple(R.shape)}")
    with torch.no_grad():
        tol = rotation_tolerance(R.dtype)
        M = R.detach().to(torch.float64).reshape(-1, 3, 3)
        finite = torch.isfinite(M).flatten(1).all(1)
        M = torch.where(finite[:, None, None], M, torch.eye(3, dtype=M.dtype, device=M.device))
        gram = (M.transpose(-1, -2) @ M - torch.eye(3, dtype=M.dtype, device=M.device)).abs().amax((-1, -2))
        det = torch.linalg.det(M)
        bad = ~finite | (gram > tol) | ((det - 1).abs() > tol)
        if not bad.any():
            return
        i = int(bad.nonzero()[0, 0])
        if not finite[i]:
            problem = "not finite"
        elif gram[i] > tol:
            problem = f"not orthogonal: max |R^T R - I| = {float(gram[i]):.3g}"
        else:
            problem = f"orthogonal but det R = {float(det[i]):.3g} (a reflection)"
        index = tuple(int(k) for k in torch.unravel_index(torch.tensor(i), R.shape[:-2])) if R.dim() > 2 else ()
        raise ValueError(f"expected rotation matrices (finite, R^T R = I and det R = +1 within {tol:.0e}); "
                         f"the matrix at index {index} is {problem}: {R.detach()[index].tolist()}")
