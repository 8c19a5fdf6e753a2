"""The real basis of spherical harmonics, real Clebsch–Gordan tables and e3nn's conventions.

**Real basis.** ``Q_l`` (:func:`change_of_basis`) is the unitary (2l+1, 2l+1) matrix, rows indexed by the real index
mu + l, columns by the complex index m + l, with real spherical harmonics ``Y_real = Q_l Y``
(the standard table, e.g. Wikipedia's "real spherical harmonics")::

    mu = 0:       Y_real_0  = Y_0
    mu = m > 0:   Y_real_m  = (Y_{-m} + (-1)^m Y_m) / sqrt2          (~ cos(m phi))
    mu = -m < 0:  Y_real_-m = i (Y_{-m} - (-1)^m Y_m) / sqrt2        (~ sin(m phi))

so for l = 1 the real components are ``sqrt(3/(4 pi)) (y, z, x) / r``. A complex-basis part
``x`` (b..., 2l+1, n) has real-basis components ``Q_l x``; the group acts on them by the real
orthogonal matrices ``Q_l D^l(R) Q_l^†``.

**Real CG tables.** ``real_cg_block(l1, l2, l) = (-i)^(l1+l2-l) sum conj(Q_l1) conj(Q_l2) C Q_l``,
i.e. ``T[a, b, c] = (-i)^(l1+l2-l) sum_{m1 m2 m} conj(Q_l1[a, m1]) conj(Q_l2[b, m2]) C[m1, m2, m]
Q_l[c, m]``. The untwisted sum is real when l1+l2+l is even and imaginary when it is odd; the fixed
phase ``(-i)^(l1+l2-l)`` makes every table real and equal to ``sqrt(2l+1)`` times e3nn's
``wigner_3j`` after the axis change below. So the real-basis product of real-basis parts is
``(-i)^(l1+l2-l) Q_l CG(Q_l1^† x, Q_l2^† y)``.

**e3nn.** e3nn's real spherical harmonics are the standard ones evaluated at the permuted point
``(x, y, z) -> (y, z, x)`` (its y axis plays the role of z). Hence e3nn's components of a degree-l
quantity are ``B_l`` times so3net's real-basis components, ``B_l = Q_l D^l(P) Q_l^†`` with ``P`` the
rotation ``P (v0, v1, v2) = (v2, v0, v1)``; ``B_1`` maps (y, z, x) to (x, y, z). Layout: so3net
parts are (b..., 2l+1, n); e3nn's ``n x l`` irreps are flat (b..., n (2l+1)), multiplicity-major
(index ``i (2l+1) + mu``). Parity is not represented in so3net; the e3nn irreps label used is
``l`` with parity ``(-1)^l`` (like spherical harmonics of a polar vector).

This module imports numpy and :mod:`so3net.cg` only; the converters accept numpy arrays or torch
tensors (torch is imported lazily when a tensor is given).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .cg import cg_block, check_lm

__all__ = ["change_of_basis", "real_cg_block", "real_cg_phase", "complex_to_real", "real_to_complex",
           "e3nn_basis", "e3nn_irreps", "to_e3nn", "from_e3nn"]

_P = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # (v0, v1, v2) -> (v2, v0, v1)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@lru_cache(maxsize=None)
def change_of_basis(l: int) -> np.ndarray:
    """``Q_l``, complex128 (2l+1, 2l+1), read-only: ``Y_real = Q_l Y`` (rows mu + l, columns m + l)."""
    check_lm(l)
    q = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    s = 1 / math.sqrt(2)
    q[l, l] = 1.0
    for m in range(1, l + 1):
        sign = (-1.0) ** m
        q[l + m, l - m], q[l + m, l + m] = s, sign * s
        q[l - m, l - m], q[l - m, l + m] = 1j * s, -1j * sign * s
    return _readonly(q)


def real_cg_phase(l1: int, l2: int, l: int) -> complex:
    """The fixed phase ``(-i)^(l1+l2-l)`` that makes :func:`real_cg_block` real."""
    return (-1j) ** ((l1 + l2 - l) % 4)


@lru_cache(maxsize=None)
def real_cg_block(l1: int, l2: int, l: int) -> np.ndarray:
    """Real CG table in the real basis, float64 (2l1+1, 2l2+1, 2l+1), read-only (see module doc).

    Defining identity: ``(D_r^{l1}(R) ⊗ D_r^{l2}(R)) T = T D_r^l(R)`` with ``D_r = Q D Q^†``.
    """
    C = cg_block(l1, l2, l)
    q1, q2, q = change_of_basis(l1), change_of_basis(l2), change_of_basis(l)
    t = np.einsum("am,bn,mnk,ck->abc", q1.conj(), q2.conj(), C, q)
    t = real_cg_phase(l1, l2, l) * t
    residue = np.abs(t.imag).max(initial=0.0)
    if residue > 1e-12:  # a broken invariant of the tables, never a user error
        raise ArithmeticError(f"real CG table ({l1},{l2},{l}) is not real: imaginary residue {residue:.3g}")
    return _readonly(np.ascontiguousarray(t.real))


@lru_cache(maxsize=None)
def _wigner_D_numpy(l: int, R: tuple | None = None) -> np.ndarray:
    """``D^l`` of a rotation given as a nested tuple (3x3), by the CG recursion
    ``D^l = C^T (D^{l-1} ⊗ D^1) C`` with ``C = cg_block(l-1, 1, l)`` and ``D^1 = U R U^†``.

    Pure numpy (complex128). Used for the fixed axis change to e3nn; :mod:`so3net.wigner` is the
    general, batched implementation (the two agree, pinned by tests).
    """
    check_lm(l)
    R = np.asarray(_P if R is None else R, dtype=np.float64)
    s = 1 / math.sqrt(2)
    U = np.array([[s, -1j * s, 0], [0, 0, 1], [-s, -1j * s, 0]])
    d1 = U @ R @ U.conj().T
    d = np.ones((1, 1), dtype=np.complex128)
    for k in range(1, l + 1):
        C = cg_block(k - 1, 1, k)
        d = np.einsum("abm,abn->mn", C, np.einsum("bd,adn->abn", d1, np.einsum("ac,cdn->adn", d, C)))
    return _readonly(d)


@lru_cache(maxsize=None)
def e3nn_basis(l: int) -> np.ndarray:
    """``B_l``, real orthogonal float64 (2l+1, 2l+1): e3nn components = ``B_l`` @ so3net real components."""
    q = change_of_basis(l)
    b = (q @ _wigner_D_numpy(l) @ q.conj().T).real
    b[np.abs(b) < 1e-14] = 0.0  # round-off of exact zeros
    return _readonly(np.ascontiguousarray(b))


def e3nn_irreps(parts: dict[int, int]) -> str:
    """e3nn irreps string for fragment counts ``{l: n}`` in increasing l, e.g. ``"4x0e+2x1o"``."""
    return "+".join(f"{n}x{l}{'e' if l % 2 == 0 else 'o'}" for l, n in sorted(parts.items()) if n)


def _apply(matrix: np.ndarray, x):
    """``matrix @ x`` over axis -2 of ``x`` (numpy array or torch tensor), keeping x's kind."""
    if isinstance(x, np.ndarray):
        return matrix.astype(np.result_type(matrix, x)) @ x
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")
    dtype = x.dtype if (x.is_complex() or np.isrealobj(matrix)) else torch.promote_types(x.dtype, torch.complex64)
    return torch.tensor(matrix, device=x.device).to(dtype) @ x.to(dtype)


def _check_part(x, l: int, name: str) -> None:
    check_lm(l)
    if not hasattr(x, "shape") or not hasattr(x, "swapaxes"):
        raise TypeError(f"{name} expects a numpy array or a torch tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[-2] != 2 * l + 1:
        raise ValueError(f"{name} expects a part of shape (b..., 2l+1, n) with 2l+1 = {2 * l + 1}, "
                         f"got {tuple(x.shape)}")


def complex_to_real(x, l: int):
    """Real-basis components ``Q_l x`` of a complex-basis part (b..., 2l+1, n); the result is complex
    (its imaginary part vanishes exactly when x is the complex form of a real-basis part)."""
    _check_part(x, l, "complex_to_real")
    return _apply(change_of_basis(l), x)


def real_to_complex(x, l: int):
    """Complex-basis components ``Q_l^† x`` of a real-basis part (b..., 2l+1, n); complex result."""
    _check_part(x, l, "real_to_complex")
    return _apply(np.ascontiguousarray(change_of_basis(l).conj().T), x)


def to_e3nn(x, l: int):
    """so3net real-basis part (b..., 2l+1, n) -> e3nn ``n x l`` layout (b..., n (2l+1)), e3nn's axes."""
    _check_part(x, l, "to_e3nn")
    if x.is_complex() if hasattr(x, "is_complex") else np.iscomplexobj(x):
        raise TypeError("to_e3nn expects a real-basis part with a real dtype; convert complex-basis "
                        "parts with complex_to_real first")
    y = _apply(e3nn_basis(l), x).swapaxes(-1, -2)
    return y.reshape(*y.shape[:-2], y.shape[-2] * y.shape[-1])


def from_e3nn(x, l: int):
    """e3nn ``n x l`` features (b..., n (2l+1)) -> so3net real-basis part (b..., 2l+1, n)."""
    check_lm(l)
    if not hasattr(x, "shape") or not hasattr(x, "swapaxes"):
        raise TypeError(f"from_e3nn expects a numpy array or a torch tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] % (2 * l + 1):
        raise ValueError(f"from_e3nn expects a last axis of n*(2l+1) with 2l+1 = {2 * l + 1}, "
                         f"got shape {tuple(x.shape)}")
    y = x.reshape(*x.shape[:-1], x.shape[-1] // (2 * l + 1), 2 * l + 1).swapaxes(-1, -2)
    return _apply(np.ascontiguousarray(e3nn_basis(l).T), y)
