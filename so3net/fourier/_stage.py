"""The Legendre / Wigner-d stage shared by the S² and SO(3) transforms.

After the FFT over the azimuthal angles a function is a set of *modes* ``k`` (``m`` on S²,
``(m, m')`` on SO(3)), each a column of the FFT output sampled at the polar nodes ``j``. Mode
``k`` carries the degrees ``l >= lmin(k)`` and

    forward:  c[l, k] = Σ_j T[k, j, l] g[j, k]        inverse:  g[j, k] = Σ_l S[k, l, j] c[l, k].

Modes are grouped by ``lmin`` (``GROUP_WIDTH`` consecutive values per group) and every group is one
real batched matmul (real and imaginary planes ride in the batch columns), so only a few zero
entries (``l < lmin`` inside a group) are multiplied and the work is O(Σ_l (#modes of degree l) · J).

Data movement is what costs on a CPU, so every layout change rides on a copy that happens anyway:
the FFT output enters modes first ``(n_cols, J, b)`` (a group whose columns are a range is a view);
group outputs are concatenated once and one gather both orders the coefficients and makes them
batch first ``(b, total)``; the inverse mirrors this. Everything is out of place (gathers, matmuls,
concatenations), so autograd and double backward work.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GROUP_WIDTH = 8


@dataclass(frozen=True)
class _Group:
    cols: torch.Tensor   # (n,) FFT columns of the modes in this group
    start: int           # first column when ``cols`` is a contiguous range, else -1
    fwd: torch.Tensor    # (n, Lg, J): T[k, j, l] stored transposed
    inv: torch.Tensor    # (n, J, Lg): S[k, l, j] stored transposed
    flat: torch.Tensor   # (n * Lg,) positions in the flat coefficient vector (``total`` = zero slot)


class ModeStage:
    """Grouped tables for one (grid, lmax); built once in float64, then cast per dtype/device.

    ``build(lmin, cols, n_cols, flat, total, d_rows, fwd_scale, inv_scale)`` takes, per mode ``k``:
    ``lmin[k]``, its FFT column ``cols[k]`` (of ``n_cols``) and ``flat[k, l]`` its position among
    the ``total`` coefficients (``-1`` where ``l < lmin``; positions no mode owns come out zero);
    ``d_rows`` yields, for l = 0..lmax in order, the (J, K) polar functions of degree ``l`` of all
    modes; ``fwd_scale[j, l]`` and ``inv_scale[l]`` scale them.
    """

    def __init__(self, groups: list[_Group], perm: torch.Tensor, colmap: torch.Tensor, total: int):
        self.groups, self.perm, self.colmap, self.total = groups, perm, colmap, total

    @classmethod
    def build(cls, lmin, cols, n_cols, flat, total, d_rows, fwd_scale, inv_scale) -> "ModeStage":
        lmax = flat.shape[1] - 1
        order = np.argsort(lmin, kind="stable")
        starts = list(range(0, lmax + 1, GROUP_WIDTH))
        members = [order[(lmin[order] >= a) & (lmin[order] < a + GROUP_WIDTH)] for a in starts]
        members, starts = zip(*[(k, a) for k, a in zip(members, starts) if len(k)])
        J = fwd_scale.shape[0]
        fwd = [np.zeros((len(k), lmax + 1 - a, J)) for k, a in zip(members, starts)]
        inv = [np.zeros((len(k), J, lmax + 1 - a)) for k, a in zip(members, starts)]
        for l, d in zip(range(lmax + 1), d_rows):
            for g, (k, a) in enumerate(zip(members, starts)):
                if a <= l:
                    fwd[g][:, l - a, :] = (d[:, k] * fwd_scale[:, l, None]).T
                    inv[g][:, :, l - a] = d[:, k].T * inv_scale[l]
        groups, placed = [], []
        for k, a, tf, ti in zip(members, starts, fwd, inv):
            pos = np.where(flat[k, a:] < 0, total, flat[k, a:]).reshape(-1)
            c = cols[k]
            start = int(c[0]) if np.array_equal(c, np.arange(c[0], c[0] + len(c))) else -1
            groups.append(_Group(_long(c), start, torch.tensor(tf), torch.tensor(ti), _long(pos)))
            placed.append(pos)
        allpos = np.concatenate(placed)
        assert np.bincount(allpos, minlength=total + 1)[:total].max() <= 1, "a coefficient owned twice"
        where = np.full(total + 1, len(allpos))  # unowned -> the zero row after the group outputs
        where[allpos] = np.arange(len(allpos))
        mode_order = np.concatenate(members)
        colmap = np.full(n_cols, len(mode_order))
        colmap[cols[mode_order]] = np.arange(len(mode_order))
        return cls(groups, _long(where[:total]), _long(colmap), total)

    def to(self, dtype: torch.dtype, device) -> "ModeStage":
        cast = lambda t: t.to(dtype=dtype, device=device)
        move = lambda t: t.to(device=device)
        groups = [_Group(move(g.cols), g.start, cast(g.fwd), cast(g.inv), move(g.flat)) for g in self.groups]
        return ModeStage(groups, move(self.perm), move(self.colmap), self.total)

    def forward(self, g: torch.Tensor, index: torch.Tensor | None = None,
                factor: torch.Tensor | None = None) -> torch.Tensor:
        """``g`` complex ``(n_cols, J, b)`` -> coefficients complex ``(b, total)``.

        ``index`` (default ``self.perm``) picks the outputs into place and ``factor (total, 2)``
        multiplies their (re, im) planes: a caller can fold a symmetry fill into the same gather."""
        C, J, b = g.shape
        gr = torch.view_as_real(g)
        outs = []
        for grp in self.groups:
            n, Lg = grp.fwd.shape[0], grp.fwd.shape[1]
            x = gr.narrow(0, grp.start, n) if grp.start >= 0 else gr.index_select(0, grp.cols)
            outs.append(torch.bmm(grp.fwd, x.reshape(n, J, 2 * b)).reshape(n * Lg, b, 2))
        stacked = torch.cat(outs + [outs[0].new_zeros(1, b, 2)], 0).permute(1, 0, 2)
        flat = stacked.index_select(1, self.perm if index is None else index)
        return torch.view_as_complex(flat if factor is None else flat * factor)

    def inverse(self, c: torch.Tensor) -> torch.Tensor:
        """Coefficients complex ``(b, total)`` -> complex ``(b, J, n_cols)`` (unused columns zero)."""
        b = c.shape[0]
        cr = torch.view_as_real(c)
        cz = torch.cat([cr, cr.new_zeros(b, 1, 2)], 1).permute(1, 0, 2)  # (total + 1, b, 2) view
        outs = []
        for grp in self.groups:
            n, J, Lg = grp.inv.shape
            x = cz.index_select(0, grp.flat).reshape(n, Lg, 2 * b)
            outs.append(torch.bmm(grp.inv, x).reshape(n, J, b, 2))
        modes = torch.cat(outs + [outs[0].new_zeros(1, J, b, 2)], 0).permute(2, 1, 0, 3)
        return torch.view_as_complex(modes.index_select(2, self.colmap))


def _long(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.long)
