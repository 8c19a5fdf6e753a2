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

with channel-wise CG products up to ``maxl`` — the message sum by the kernels' outer strategy
(:func:`so3net.kernels.message.padded_message_product`, over one or several padded neighbour
lists), the square of :func:`channelwise_square_plan` by :func:`so3net.kernels.message.row_product`
(the evaluation the backend in force does fastest) — and per-l complex mixing W
(:meth:`so3net.SO3vec.mix`). Everything is equivariant: the scalars are invariant,
Y^l(R r) = D^l Y^l(r), CG products and mixing commute with the group action.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.dispatch import message_passing_product
from ..kernels.message import (EdgeFactors, Neighbours, channelwise_square_plan, neighbour_message_product, row_product, strategy,
                               uniform_channels)
from ..plan import cg_plan
from ..types import SO3type, SO3vec
from .linear import init_complex_weight
from .radial import SoftCutoff

__all__ = ["EdgeLevel", "CGLayer", "edge_operand"]


def edge_operand(scalars: torch.Tensor, harmonics: torch.Tensor) -> torch.Tensor:
    """Υ per slot: fragment c of part l is ``scalars[..., l, c] · Y^l``, complex ``(N, d, (L+1)², C)``
    as :func:`so3net.kernels.message.padded_message_product` reads it, stored as (C, N, (L+1)², d):
    the matrices its batched matmul reads, contiguous. ``scalars (N, d, L+1, C)``, ``harmonics
    (N, d, (L+1)²)``. :class:`so3net.kernels.message.EdgeFactors` keeps the two factors instead,
    which the CG layer's fused kernel reads without forming Υ."""
    return EdgeFactors(scalars, harmonics).materialize()


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


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


class CGLayer(nn.Module):
    """Atom level: aggregate, identity and CG square of type ``tau_in``, mixed to ``C`` per l <= maxl."""

    def __init__(self, tau_in, tau_edge, maxl: int, num_channels: int, init: str = "rand", gain: float = 10.0):
        super().__init__()
        self.tau_in, self.tau_edge, self.maxl = tuple(SO3type(tau_in)), tuple(SO3type(tau_edge)), int(maxl)
        self.edge_plan = cg_plan(self.tau_edge, self.tau_in, self.maxl, "diag")
        self.square_plan = channelwise_square_plan(self.tau_in, self.maxl)
        self.tau_out = (int(num_channels),) * (self.maxl + 1)
        taus = (self.edge_plan.tau_out, self.tau_in, self.square_plan.tau_out)
        self.tau_cat = tuple(sum(t[l] if l < len(t) else 0 for t in taus) for l in range(self.maxl + 1))
        if 0 in self.tau_cat:
            raise ValueError(f"CG layer with tau_in={self.tau_in}, tau_edge={self.tau_edge}, maxl={self.maxl} "
                             f"produces no fragments for some l <= maxl: {self.tau_cat}")
        self.weights = nn.ParameterList(nn.Parameter(init_complex_weight(n, num_channels, init, gain))
                                        for n in self.tau_cat)

    def forward(self, x: SO3vec, edge: torch.Tensor | EdgeFactors | list, nbrs: Neighbours | list[Neighbours],
                sources: torch.Tensor | list[torch.Tensor] | None = None) -> SO3vec:
        """Atom features ``x`` (batch (N,), type ``tau_in``); ``nbrs``: the padded neighbour lists
        (a :class:`Neighbours`, or a list of them, e.g. :meth:`Neighbours.buckets`); ``edge``:
        the edge operand over the slots of each list, as :func:`edge_operand` forms it or in factored
        form (:class:`so3net.kernels.message.EdgeFactors`, which the compiled kernel reads as is);
        ``sources``: ``nbrs.sources(x.packed(), C)`` of each list when already formed -> type
        ``tau_out``. The products follow :func:`so3net.kernels.message.strategy`: the outer
        strategy under the CPU backends, the kernels' fused products (Triton) under the triton backend."""
        xp = x.packed()
        lists, edges = _as_list(nbrs), _as_list(edge)
        srcs = [None] * len(lists) if sources is None else _as_list(sources)
        if not len(lists) == len(edges) == len(srcs):
            raise ValueError(f"one edge operand and one source tensor per neighbour list: got {len(lists)} lists, "
                             f"{len(edges)} edge operands, {len(srcs)} source tensors")
        if strategy(xp) == "outer":
            C = uniform_channels(self.tau_in)
            aggs = [neighbour_message_product(e, xp, nb, self.edge_plan, sources=s) for nb, e, s in zip(lists, edges, srcs)]
            if len(lists) == 1 and lists[0].dst is None:
                agg = aggs[0]
            elif Neighbours.consecutive(lists):   # rows are atoms 0, 1, ... (Neighbours.grouped); the rest receive nothing
                rest = xp.shape[0] - sum(nb.src.shape[0] for nb in lists)
                agg = torch.cat(aggs + ([aggs[0].new_zeros(rest, self.edge_plan.dim_out)] if rest else []))
            else:   # rows of the lists -> atoms (summed, as the fused path does); atoms in no list receive nothing
                rows = torch.cat([nb.rows() for nb in lists])
                agg = aggs[0].new_zeros(xp.shape[0], self.edge_plan.dim_out).index_add(0, rows, torch.cat(aggs))
        else:
            per_edge, src, dst = [], [], []
            for nb, e in zip(lists, edges):
                e = e.materialize() if isinstance(e, EdgeFactors) else e
                row, slot = nb.mask.nonzero(as_tuple=True)
                per_edge.append(e[row, slot].reshape(len(row), self.edge_plan.dim1))
                src.append(nb.src[row, slot])
                dst.append(nb.rows()[row])
            agg = message_passing_product(torch.cat(per_edge), xp, torch.cat(src), torch.cat(dst), self.edge_plan,
                                          num_nodes=xp.shape[0])
        sq = row_product(xp, xp, self.square_plan)
        groups = (SO3vec.from_packed(agg, self.edge_plan.tau_out), x,
                  SO3vec.from_packed(sq, self.square_plan.tau_out))
        out = []   # [agg ⊕ x ⊕ sq]^l W^l for every l, written once into the packed output
        for l, w in enumerate(self.weights):
            blocks = [v.parts[l] for v in groups if l < len(v.parts) and v.parts[l].shape[-1]]
            mixed = torch.cat(blocks, -1) @ torch.view_as_complex(w).to(x.dtype)
            out.append(mixed.reshape(mixed.shape[0], mixed.shape[1] * mixed.shape[2]))
        return SO3vec.from_packed(torch.cat(out, 1), self.tau_out, basis=x.basis)

    def extra_repr(self) -> str:
        return f"tau_in={self.tau_in}, tau_edge={self.tau_edge}, tau_cat={self.tau_cat}, tau_out={self.tau_out}"
