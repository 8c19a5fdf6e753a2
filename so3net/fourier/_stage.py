"""The Legendre / Wigner-d stage shared by the S² and SO(3) transforms.

After the FFT over the azimuthal angles a function is a set of *modes* ``k`` (``m`` on S²,
``(m, m')`` on SO(3)), each a column of the FFT output sampled at the polar nodes ``j``. Mode
``k`` carries the degrees ``l >= lmin(k)`` and

    forward:  c[l, k] = Σ_j T[k, j, l] g[j, k]        inverse:  g[j, k] = Σ_l S[k, l, j] c[l, k].

Modes are grouped by ``lmin`` (``GROUP_WIDTH`` consecutive values per group) and every group is one
real batched matmul (real and imaginary planes ride in the batch rows), so only a few zero entries
(``l < lmin`` inside a group) are multiplied and the work is O(Σ_l (#modes of degree l) · J).
Data is laid out modes first and batch last, ``(n_cols, J, b)``, so that gathering a group's modes
copies whole rows and the real/imaginary planes of the batch become matmul columns for free.
Everything is out of place (gathers, matmuls, concatenations): autograd and double backward work.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GROUP_WIDTH = 8


@dataclass(frozen=True)
class _Group:
    cols: torch.Tensor   # (n,) FFT columns of the modes in this group
    fwd: torch.Tensor    # (n, Lg, J): T[k, j, l] stored transposed
    inv: torch.Tensor    # (n, J, Lg): S[k, l, j] stored transposed
    flat: torch.Tensor   # (n * Lg,) positions in the flat coefficient vector (``total`` = zero slot)


class ModeStage:
    """Grouped tables for one (grid, lmax); built once in float64, then cast per dtype/device.

    ``build(lmin, cols, n_cols, flat, d_rows, fwd_scale, inv_scale)`` takes, per mode ``k``:
    ``lmin[k]``, its FFT column ``cols[k]`` (of ``n_cols``) and ``flat[k, l]`` its coefficient
    position (``-1`` where ``l < lmin``); ``d_rows`` yields, for l = 0..lmax in order, the (J, K)
    polar functions of degree ``l`` of all modes; ``fwd_scale[j, l]`` and ``inv_scale[l]`` scale them.
    """

    def __init__(self, groups: list[_Group], perm: torch.Tensor, colmap: torch.Tensor, total: int):
        self.groups, self.perm, self.colmap, self.total = groups, perm, colmap, total

    @classmethod
    def build(cls, lmin, cols, n_cols, flat, d_rows, fwd_scale, inv_scale) -> "ModeStage":
        lmax = flat.shape[1] - 1
        total = int(flat.max()) + 1
        order = np.argsort(lmin, kind="stable")
        starts = list(range(0, lmax + 1, GROUP_WIDTH))
        members = [order[(lmin[order] >= a) & (lmin[order] < a + GROUP_WIDTH)] for a in starts]
        J = fwd_scale.shape[0]
        fwd = [np.zeros((len(k), lmax + 1 - a, J)) for k, a in zip(members, starts)]
        inv = [np.zeros((len(k), J, lmax + 1 - a)) for k, a in zip(members, starts)]
        for l, d in zip(range(lmax + 1), d_rows):
            for g, (k, a) in enumerate(zip(members, starts)):
                if a <= l and len(k):
                    fwd[g][:, l - a, :] = (d[:, k] * fwd_scale[:, l, None]).T
                    inv[g][:, :, l - a] = d[:, k].T * inv_scale[l]
        groups, placed = [], []
        for k, a, tf, ti in zip(members, starts, fwd, inv):
            if len(k) == 0:
                continue
            pos = np.where(flat[k, a:] < 0, total, flat[k, a:]).reshape(-1)
            groups.append(_Group(_long(cols[k]), torch.tensor(tf), torch.tensor(ti), _long(pos)))
            placed.append(pos)
        # forward: concatenated group outputs -> flat coefficients; inverse: modes -> FFT columns
        where = np.full(total + 1, -1)
        allpos = np.concatenate(placed)
        where[allpos] = np.arange(len(allpos))
        assert (where[:total] >= 0).all(), "every coefficient must be produced by exactly one group"
        mode_order = np.concatenate([k for k in members if len(k)])
        colmap = np.full(n_cols, len(mode_order))
        colmap[cols[mode_order]] = np.arange(len(mode_order))
        return cls(groups, _long(where[:total]), _long(colmap), total)

    def to(self, dtype: torch.dtype, device) -> "ModeStage":
        cast = lambda t: t.to(dtype=dtype, device=device)
        move = lambda t: t.to(device=device)
        groups = [_Group(move(g.cols), cast(g.fwd), cast(g.inv), move(g.flat)) for g in self.groups]
        return ModeStage(groups, move(self.perm), move(self.colmap), self.total)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        """``g`` complex ``(n_cols, J, b)`` -> flat complex coefficients ``(total, b)``."""
        C, J, b = g.shape
        outs = []
        for grp in self.groups:
            n, Lg = grp.fwd.shape[0], grp.fwd.shape[1]
            x = torch.view_as_real(g.index_select(0, grp.cols)).reshape(n, J, 2 * b)
            outs.append(torch.bmm(grp.fwd, x).reshape(n * Lg, b, 2))
        flat = torch.cat(outs, 0).index_select(0, self.perm)
        return torch.view_as_complex(flat)

    def inverse(self, c: torch.Tensor) -> torch.Tensor:
        """Flat complex coefficients ``(total, b)`` -> complex ``(n_cols, J, b)`` (unused columns zero)."""
        b = c.shape[1]
        cr = torch.view_as_real(c)
        cz = torch.cat([cr, cr.new_zeros(1, b, 2)], 0)
        outs = []
        for grp in self.groups:
            n, J, Lg = grp.inv.shape
            x = cz.index_select(0, grp.flat).reshape(n, Lg, 2 * b)
            outs.append(torch.bmm(grp.inv, x).reshape(n, J, b, 2))
        modes = torch.cat(outs + [outs[0].new_zeros(1, J, b, 2)], 0).index_select(0, self.colmap)
        return torch.view_as_complex(modes)


def _long(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.long)
