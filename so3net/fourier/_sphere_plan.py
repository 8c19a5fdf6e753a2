"""The S² transforms in a handful of torch ops: tables built once per (grid, lmax, dtype,
device, variant), then a transform over φ, one batched matmul over θ and one gather.

The θ stage (Wigner-d / Legendre) runs over a list of orders ``m`` on real tensors whose layout
lets each op feed the next without a transpose (``N_l = sqrt((2l+1)/4π)``; coefficient ``(l, m)``
at ``l² + l + m``; real and imaginary parts as planes ``c``):

- forward ``x (b, J, n_φ)`` → φ stage ``Z_m(θ_j) = Σ_k x_jk e^{±imφ_k}`` as ``(M, 2, b, J)`` →
  ``bmm`` with ``T[m, j, l] = w_j (2π/n_φ) N_l d^l_{m0}(θ_j)`` → ``(M, 2, b, L+1)`` → one gather
  into the batch-first coefficients ``(b, (L+1)², 2)``.
- inverse, ``Re f = Σ_{l,m} N_l d^l_{m0}(θ) (Re F^l_m cos mφ + Im F^l_m sin mφ)``: one gather of
  the coefficients into ``(M, 2, b, L+1)`` → ``bmm`` with ``S[m, l, j] = N_l d^l_{m0}(θ_j) c_m``
  → ``(M, 2, b, J)`` → φ stage.

Two variants, chosen by ``n_φ``; both separable (a transform over φ alone, then one over θ; no
dense matrix over the grid):

- ``dft`` (``n_φ <= DFT_MAX_NPHI``): all orders ``m = -L..L``; the φ stages are real matmuls with
  cos/sin tables (``e^{+imφ}`` forward; a ``(2M, 2 n_φ)`` table for complex values), which beat
  the fixed cost of an FFT call at these sizes; nothing else is needed (``c_m = 1``).
- ``fft``: the one-sided spectrum ``m = 0..L`` of a real function. Forward: ``rfft``, then
  ``F^l_m = conj(Z)·T`` and ``F^l_{-m} = (-1)^m conj(F^l_m)`` as one sign on the gathered planes.
  Inverse: a second gather and an ``addcmul`` fold each ``±m`` pair into
  ``K^l_m = F^l_m + (-1)^m conj(F^l_{-m})`` (``m > 0``; ``K^l_0 = F^l_0``), ``c_0 = 1``,
  ``c_m = 1/2``, and a Hermitian FFT computes ``h_0 + 2 Σ_{m>0} Re(h_m e^{-imφ})``. Complex values
  and complex outputs are two real transforms.

The gathers (``take`` on the small dft path, ``index_select`` on the fft path, where it is twice
as fast) read precomputed int64 positions, cached per batch size: each is the size of the batch's
coefficients, and the 16 most recent batch sizes are kept. Rows ``l < |m|`` of the tables are
zero, so gathers may point anywhere there. In float32, table entries below ``TINY = 2^-100`` are
zero: the d^l_{m0} near the poles are otherwise subnormal from B ≈ 24 on, which makes the matmuls
2-3 times slower; the change is far below float32 resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ._dtable import wigner_d_rows
from .grids import SphereGrid

DFT_MAX_NPHI = 32
TINY = 2.0 ** -100


@dataclass(frozen=True, eq=False)
class SpherePlan:
    """Tables of one (grid, lmax, dtype, device, variant); see the module docstring."""
    lmax: int
    n_theta: int
    n_phi: int
    orders: tuple[int, ...]  # the m of the β stage: -L..L (dft) or 0..L (fft)
    M: int                   # len(orders)
    T: torch.Tensor          # (M, J, L+1) forward β tables
    S: torch.Tensor          # (M, L+1, J) inverse β tables
    A: torch.Tensor | None   # dft: (2M, n_phi) rows (m, re/im): cos mφ, sin mφ
    Ac: torch.Tensor | None  # dft: (2M, 2 n_phi) the same for complex values, columns (k, re/im)
    sign: torch.Tensor | None  # fft: ((L+1)², 2) sign of the gathered (re, im) planes
    fold: torch.Tensor | None  # fft: (M, 2, 1, L+1) factor of F^l_{-m} in K^l_m

    @property
    def dft(self) -> bool:
        return self.A is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Values ``(b, J * n_phi)`` -> coefficients ``(b, (L+1)²)`` (complex). Complex values
        take the complex DFT table (dft) or two real transforms (fft)."""
        b = x.shape[0]
        x = x.resolve_conj()                  # view_as_real refuses lazily conjugated tensors
        if self.A is None and x.is_complex():
            both = self.forward(torch.view_as_real(x).permute(2, 0, 1).reshape(2 * b, -1))
            return torch.add(both[:b], both[b:], alpha=1j)
        out = torch.bmm(self._alpha_forward(x, b), self.T)                   # (M, 2, b, L+1)
        index = _forward_index(self, b, x.device)
        if self.sign is None:  # small: ``take`` reads (b, (L+1)², 2) in one op
            return torch.view_as_complex(torch.take(out, index))
        out = out.view(-1).index_select(0, index).view(b, -1, 2)  # large: index_select is faster
        return torch.view_as_complex(out.mul_(self.sign))

    def inverse(self, c: torch.Tensor, real: bool) -> torch.Tensor:
        """Coefficients ``(b, (L+1)²)`` (complex) -> values ``(b, J * n_phi)``: ``Re f`` when
        ``real``, else ``f`` (fft: ``Re f + i Re g`` with ``g`` the function of ``-i F``)."""
        b, J, M = c.shape[0], self.n_theta, self.M
        c = c.resolve_conj()
        if not (real or self.dft):
            both = self.inverse(torch.cat([c, c * -1j]), True)
            return torch.complex(both[:b], both[b:])
        cr, shape = torch.view_as_real(c).reshape(-1), (M, 2 * b, self.lmax + 1)
        index = _inverse_index(self, b, c.device)
        k = cr.index_select(0, index[0]).view(shape)                          # (M, 2, b, L+1)
        if self.fold is not None:
            k = k.view(M, 2, b, -1).addcmul_(cr.index_select(0, index[1]).view(M, 2, b, -1), self.fold)
        h = torch.bmm(k.view(shape), self.S)                                  # (M, 2b, J)
        return self._alpha_inverse(h.view(M, 2, b, J), real)

    def _alpha_forward(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """``(b, J * n_phi)`` -> ``(M, 2b, J)``."""
        J, M = self.n_theta, self.M
        if self.A is not None:  # (2M, n_phi) @ (n_phi, bJ): rows (m, re/im), columns (b, j)
            table, x = (self.Ac, torch.view_as_real(x)) if x.is_complex() else (self.A, x)
            return torch.mm(table, x.reshape(b * J, -1).t()).view(M, 2 * b, J)
        z = torch.view_as_real(torch.fft.rfft(x.reshape(b, J, self.n_phi), dim=-1))[:, :, :M]
        return z.permute(2, 3, 0, 1).reshape(M, 2 * b, J)                       # from (b, J, M, 2)

    def _alpha_inverse(self, h: torch.Tensor, real: bool) -> torch.Tensor:
        """``(M, 2, b, J)`` -> ``(b, J * n_phi)``."""
        M, _, b, J = h.shape
        h = h.permute(2, 3, 0, 1)                                              # (b, J, M, 2)
        if not self.dft:  # copied into (b, J, n_phi//2 + 1, 2) with the zero modes hfft needs
            full = h.new_empty(b, J, self.n_phi // 2 + 1, 2)
            full[:, :, M:].zero_()
            full[:, :, :M].copy_(h)
            return torch.fft.hfft(torch.view_as_complex(full), n=self.n_phi, dim=-1).view(b, -1)
        if real:
            return torch.mm(h.reshape(b * J, 2 * M), self.A).view(b, -1)
        return torch.view_as_complex(torch.mm(h.reshape(b * J, 2 * M), self.Ac).view(b, -1, 2))


def sphere_plan(grid: SphereGrid, lmax: int, dtype: torch.dtype, device, dft: bool | None = None) -> SpherePlan:
    """The plan for real ``dtype`` (float32/float64) on ``device``; ``dft`` forces the variant
    (default: ``n_phi <= DFT_MAX_NPHI``)."""
    if dft is None:
        dft = grid.shape[1] <= DFT_MAX_NPHI
    return _plan(grid, lmax, dtype, torch.device(device), bool(dft))


@lru_cache(maxsize=64)
def _plan(grid: SphereGrid, lmax: int, dtype: torch.dtype, device: torch.device, dft: bool) -> SpherePlan:
    tables = _tables64(grid, lmax, dft)
    cast = {}
    for name, a in tables.items():
        if a is not None and dtype == torch.float32 and name in ("T", "S"):
            a = np.where(np.abs(a) < TINY, 0.0, a)
        cast[name] = None if a is None else torch.tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
    J, n_phi = grid.shape
    orders = tuple(range(-lmax, lmax + 1)) if dft else tuple(range(lmax + 1))
    return SpherePlan(lmax, J, n_phi, orders, len(orders), **cast)


@lru_cache(maxsize=32)
def _tables64(grid: SphereGrid, lmax: int, dft: bool) -> dict[str, np.ndarray | None]:
    """All tables in float64 numpy (see the module docstring)."""
    L, n_phi = lmax, grid.shape[1]
    m, ls = (np.arange(-L, L + 1) if dft else np.arange(L + 1)), np.arange(L + 1)
    d = np.stack(list(wigner_d_rows(L, grid.theta.numpy(), m, np.zeros_like(m))))   # (l, j, m)
    norm = np.sqrt((2 * ls + 1) / (4 * np.pi))
    w = grid.theta_weights.numpy() * (2 * np.pi / n_phi)
    T = d.transpose(2, 1, 0) * w[None, :, None] * norm                                # (m, j, l)
    half = np.where((m == 0) | dft, 1.0, 0.5)
    S = d.transpose(2, 0, 1) * (norm[None, :, None] * half[:, None, None])           # (m, l, j)
    if dft:
        ang = np.outer(m, grid.phi.numpy())
        cos, sin = np.cos(ang), np.sin(ang)
        A = np.stack([cos, sin], 1).reshape(2 * m.size, n_phi)
        Ac = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1).reshape(2 * m.size, 2 * n_phi)
        return {"T": T, "S": S, "A": A, "Ac": Ac, "sign": None, "fold": None}
    mk = _degrees_orders(L)[1]
    parity = np.where(mk % 2, -1.0, 1.0)
    sign = np.stack([np.where(mk < 0, parity, 1.0), np.where(mk < 0, parity, -1.0)], -1)
    alt = np.where(m % 2, -1.0, 1.0) * (m > 0)
    fold = np.stack([alt, -alt], 1)[:, :, None, None] * np.ones(L + 1)
    return {"T": T, "S": S, "A": None, "Ac": None, "sign": sign, "fold": fold}


def _degrees_orders(L: int) -> tuple[np.ndarray, np.ndarray]:
    """``(l, m)`` of the flat coefficient positions ``l² + l + m``."""
    l = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)
    return l, np.arange(l.size) - l * l - l


@lru_cache(maxsize=16)
def _forward_index(plan: SpherePlan, b: int, device: torch.device) -> torch.Tensor:
    """Positions in the β-stage output ``(M, 2, b, L+1)`` of the coefficients ``(b, (l, m), re/im)``,
    shaped for ``take`` (dft) or flat for ``index_select`` (fft, which reads ``|m|``; its sign
    does the rest)."""
    l, mk = _degrees_orders(plan.lmax)
    row = mk + plan.lmax if plan.dft else np.abs(mk)
    c, bi = np.arange(2), np.arange(b)[:, None, None]
    flat = ((row[:, None] * 2 + c) * b + bi) * (plan.lmax + 1) + l[:, None]     # (b, (L+1)², 2)
    return torch.as_tensor(flat if plan.dft else flat.reshape(-1), dtype=torch.long, device=device)


@lru_cache(maxsize=16)
def _inverse_index(plan: SpherePlan, b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``index_select`` positions in the coefficients ``(b, (L+1)², 2)`` of ``F^l_m`` and ``F^l_{-m}`` for
    the β-stage input ``(M, 2, b, L+1)``; 0 where ``l < |m|`` (the tables are zero there)."""
    L = plan.lmax
    m = np.asarray(plan.orders)[:, None, None, None]
    c = np.arange(2)[None, :, None, None]
    bi = np.arange(b)[None, None, :, None]
    l = np.arange(L + 1)[None, None, None, :]
    pos = lambda k: np.where(l >= np.abs(m), (bi * (L + 1) ** 2 + k) * 2 + c, 0)
    as_long = lambda a: torch.as_tensor(a.reshape(-1), dtype=torch.long, device=device)
    return as_long(pos(l * l + l + m)), as_long(pos(l * l + l - m))
