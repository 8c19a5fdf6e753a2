"""Cormorant's two levels: the edge network and the CG layer (atom level).

Edge level s (per neighbour slot (i, k) with source j, per l <= max_sh and channel c; complex):

    G^s_{ij,l,c} = μ_c(r_ij) · h(r_ij) · [ G^{s-1}_{ij,l} W^prev_l + (F_i · F_j) W^dot_l + η(r_ij) W^rad_l ]_c
    Υ^s_{ij} = ⊕_l G^s_{ij,l} ⊗ Y^l(r̂_ij)            (fragment c of part l is G_{l,c} Y^l)

with μ the soft cutoff, h the smooth hard cutoff, η the radial basis and (F_i · F_j) the
per-(l, fragment) atom-pair scalars of :func:`so3net.nn.edges.pair_dots`. This is the talk's
``Υ¹_ij ⊕ (F_i·F_j) Υ³_ij`` written as in the original code: one linear map of the concatenated
edge scalars, so the radial term (Υ¹) and the dot-product term (Υ³) share the angular part Y.

CG layer s (per atom i):

    F^s_i = [ Σ_j Υ^s_ij ⊗cg F^{s-1}_j  ⊕  F^{s-1}_i  ⊕  F^{s-1}_i ⊗cg F^{s-1}_i ] · W^s

with channel-wise CG products up to ``maxl`` (:mod:`so3net.nn.products`) and per-l complex mixing
W (:mod:`so3net.nn.linear`). Everything is equivariant: the scalars are invariant,
Y^l(R r) = D^l Y^l(r), CG products and mixing commute with the group action.
"""
from __future__ import annotations

import torch
from torch import nn

from ._layout import check_tau, uniform_tau
from .linear import init_complex_weight
from .products import aggregate_messages, cg_square, channelwise_square_plan, contraction, message_plan
from .radial import SoftCutoff

__all__ = ["EdgeLevel", "CGLayer"]


class EdgeLevel(nn.Module):
    """Edge network of one level: complex edge scalars ``(..., max_sh+1, C)`` for edges ``(...)``."""

    def __init__(self, num_prev: int, num_dots: int, num_basis: int, num_channels: int, max_sh: int,
                 soft_cutoff: SoftCutoff | None = None, init: str = "randn", gain: float = 1.0):
        super().__init__()
        self.max_sh, self.num_channels = max_sh, num_channels
        width = (max_sh + 1) * num_channels
        fan = num_prev + num_dots + num_basis
        self.w_prev = nn.Parameter(torch.stack([init_complex_weight(fan, num_channels, init, gain)[:num_prev]
                                                for _ in range(max_sh + 1)])) if num_prev else None
        self.w_dot = nn.Parameter(init_complex_weight(fan, width, init, gain)[:num_dots])
        self.w_rad = nn.Parameter(init_complex_weight(fan, width, init, gain)[:num_basis].flatten(1))
        self.soft_cutoff = soft_cutoff

    def forward(self, prev: torch.Tensor | None, dots: torch.Tensor, basis: torch.Tensor,
                r: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """``prev (..., L+1, C_prev)`` or None, ``dots (..., n_dots)`` complex, ``basis (..., n_basis)``
        real, ``r`` and ``hard`` (the smooth hard cutoff factor) ``(...)``."""
        lead, L1, C = dots.shape[:-1], self.max_sh + 1, self.num_channels
        out = dots @ torch.view_as_complex(self.w_dot).to(dots.dtype)
        out = out + torch.view_as_complex((basis @ self.w_rad).reshape(*lead, L1 * C, 2))
        out = out.reshape(*lead, L1, C)
        if self.w_prev is not None:
            out = out + torch.einsum("...lp,lpc->...lc", prev, torch.view_as_complex(self.w_prev).to(prev.dtype))
        mask = hard[..., None]
        if self.soft_cutoff is not None:
            mask = mask * self.soft_cutoff(r)
        return out * mask[..., None, :]


class CGLayer(nn.Module):
    """Atom level: aggregate, identity and CG square of type ``tau_in``, mixed to ``C`` per l <= maxl."""

    def __init__(self, tau_in, tau_edge, maxl: int, num_channels: int, init: str = "rand", gain: float = 10.0):
        super().__init__()
        self.tau_in, self.tau_edge, self.maxl = check_tau(tau_in), check_tau(tau_edge), int(maxl)
        self.edge_plan = message_plan(self.tau_edge, self.tau_in, self.maxl)
        self.square_plan = channelwise_square_plan(self.tau_in, self.maxl)
        self.tau_out = uniform_tau(num_channels, self.maxl)
        taus = (self.edge_plan.tau_out, self.tau_in, self.square_plan.tau_out)
        self.tau_cat = tuple(sum(t[l] if l < len(t) else 0 for t in taus) for l in range(self.maxl + 1))
        if 0 in self.tau_cat:
            raise ValueError(f"CG layer with tau_in={self.tau_in}, tau_edge={self.tau_edge}, maxl={self.maxl} "
                             f"produces no fragments for some l <= maxl: {self.tau_cat}")
        self.weights = nn.ParameterList(nn.Parameter(init_complex_weight(n, num_channels, init, gain))
                                        for n in self.tau_cat)
        self._agg_rows = contraction(self.edge_plan).output_rows()
        self._sq_rows = contraction(self.square_plan).output_rows()
        self._x_rows = {l: (l * l, 1) for l, n in enumerate(self.tau_in) if n}

    def forward(self, x: torch.Tensor, scalars: torch.Tensor, harmonics: torch.Tensor,
                x_src: torch.Tensor) -> torch.Tensor:
        """Atom features ``x`` in the mcn layout ``(D_in, C, N)``; edge scalars ``(N, d, L+1, C)``,
        harmonics ``(N, d, (L+1)²)`` and source features ``x_src (C, N, d, D_in)`` over neighbour
        slots -> mcn ``(D_out, C', N)``."""
        C, N = x.shape[1:]
        agg = aggregate_messages(scalars, harmonics, x_src, self.edge_plan)
        sq = cg_square(x, self.square_plan)
        groups = [(agg, self._agg_rows), (x, self._x_rows), (sq, self._sq_rows)]
        out = []
        for l, w in enumerate(self.weights):
            blocks = [t[first:first + (2 * l + 1) * n].reshape(2 * l + 1, n * C, N)
                      for t, rows in groups if l in rows for first, n in [rows[l]]]
            out.append(torch.view_as_complex(w).to(x.dtype).t() @ torch.cat(blocks, 1))
        return torch.cat(out, 0)

    def extra_repr(self) -> str:
        return f"tau_in={self.tau_in}, tau_edge={self.tau_edge}, tau_cat={self.tau_cat}, tau_out={self.tau_out}"
