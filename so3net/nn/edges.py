"""Edges of a batch of molecules: neighbour lists, geometry, spherical harmonics, pair scalars.

Conventions: atoms of all molecules are flattened, ``batch[a]`` is the molecule of atom a. An edge
(src j -> dst i) carries the message from j to i; its vector is ``r_ij = r_j - r_i`` (from atom i to
its neighbour j), its length ``|r_ij|``. Edge lists hold both directions.

The layers use the padded layout :class:`Neighbours`: slot ``(i, k)`` holds the k-th neighbour of
atom i, ``d`` = the largest number of neighbours (not N: memory is N·d, never N² or N×N per batch).
Empty slots have ``mask = False``, source index N (reads a row of zeros) and a placeholder vector
of length ``far`` beyond every cutoff, so every edge quantity vanishes there.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ..sph import spherical_harmonics_all
from ._ops import batched_matmul

__all__ = ["radius_graph", "Neighbours", "edge_harmonics", "pair_dots", "sum_over_m"]


def radius_graph(positions: torch.Tensor, batch: torch.Tensor, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(src, dst)`` of all ordered pairs i != j of one molecule with ``|r_i - r_j| < cutoff``.

    Candidates are the pairs inside each molecule only (Σ_b n_b² of them, never N² over the
    batch), which suits molecules. Indices carry no gradient.
    """
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")
    if batch.shape != positions.shape[:1]:
        raise ValueError(f"batch must have shape ({positions.shape[0]},), got {tuple(batch.shape)}")
    with torch.no_grad():
        batch = batch.to(torch.long)
        order = torch.argsort(batch, stable=True)
        counts = torch.bincount(batch[order])
        starts = torch.cumsum(counts, 0) - counts
        mol = batch[order]
        n_of = counts[mol]                                            # molecule size per sorted atom
        row = torch.repeat_interleave(torch.arange(len(order), device=batch.device), n_of)
        first = torch.cumsum(n_of, 0) - n_of                          # first candidate of each row
        col = starts[mol][row] + (torch.arange(len(row), device=batch.device) - first[row])
        src, dst = order[col], order[row]
        d = positions.detach()[src] - positions.detach()[dst]
        keep = (src != dst) & ((d * d).sum(1) < cutoff * cutoff)
        return src[keep], dst[keep]


@dataclass(frozen=True)
class Neighbours:
    """Padded neighbour lists: ``src (N, d)`` source atom per slot (N when empty), ``mask (N, d)``."""
    src: torch.Tensor
    mask: torch.Tensor

    @staticmethod
    def from_edges(src: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> "Neighbours":
        """Slots from an edge list; the order of a destination's neighbours follows the edge list."""
        with torch.no_grad():
            order = torch.argsort(dst, stable=True)
            deg = torch.bincount(dst, minlength=num_nodes)
            d = int(deg.max()) if dst.numel() else 0
            rank = torch.arange(dst.numel(), device=dst.device) - (torch.cumsum(deg, 0) - deg)[dst[order]]
            slots = torch.full((num_nodes, d), num_nodes, dtype=torch.long, device=dst.device)
            slots[dst[order], rank] = src[order]
        return Neighbours(slots, slots < num_nodes)

    @property
    def num_edges(self) -> int:
        return int(self.mask.sum())

    def gather(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Atom rows of ``t`` (atoms along ``dim``) at every slot's source: the atom axis becomes
        ``(N, d)``; zeros in empty slots. The result is contiguous."""
        pad = t.new_zeros(t.shape[:dim] + (1,) + t.shape[dim + 1:])
        out = torch.cat([t, pad], dim).index_select(dim, self.src.reshape(-1))
        return out.reshape(t.shape[:dim] + tuple(self.src.shape) + t.shape[dim + 1:])

    def vectors(self, positions: torch.Tensor, far: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_ij (N, d, 3), |r_ij| (N, d))``; empty slots get the constant vector (0, 0, far)."""
        vec = self.gather(positions) - positions[:, None, :]
        placeholder = vec.new_tensor([0.0, 0.0, far])
        vec = torch.where(self.mask[..., None], vec, placeholder)
        return vec, vec.norm(dim=-1)


def edge_harmonics(vec: torch.Tensor, lmax: int) -> torch.Tensor:
    """``Y^l(r̂)`` for l = 0..lmax of vectors ``(..., 3)`` (:func:`so3net.sph.spherical_harmonics_all`,
    so ``Y^l(R r) = D^l(R) Y^l(r)``): packed ``(..., (lmax+1)²)`` complex, part l at ``[l², (l+1)²)``."""
    if vec.numel() == 0:  # no edges at all (isolated atoms): nothing to evaluate or differentiate
        dtype = torch.complex128 if vec.dtype == torch.float64 else torch.complex64
        return torch.zeros(vec.shape[:-1] + ((lmax + 1) ** 2,), dtype=dtype, device=vec.device)
    return torch.cat(list(spherical_harmonics_all(lmax, vec).values()), -1)


@lru_cache(maxsize=64)
def sum_over_m(tau: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """0/1 matrix ``(Σ_l (2l+1), L+1)`` summing the m entries of each part l (parts with tau[l] > 0)."""
    ls = [l for l, n in enumerate(tau) if n]
    rows = [torch.eye(len(ls))[i].expand(2 * l + 1, len(ls)) for i, l in enumerate(ls)]
    return torch.cat(rows, 0).to(device=device, dtype=dtype)


def pair_dots(x: torch.Tensor, x_src: torch.Tensor, tau: tuple[int, ...]) -> torch.Tensor:
    """Atom-pair scalars ``(F_i · F_j)_{l,c} = Σ_m conj(F_i^l[m, c]) F_j^l[m, c]`` for every slot.

    ``x (C, N, D)`` atom features channels-first (D = Σ_l (2l+1) over present parts, every part with
    C fragments), ``x_src (C, N, d, D)`` = ``Neighbours.gather(x, dim=1)``. Returns ``(N, d, n_l C)``,
    l major and channel minor. Invariant because every D^l is unitary. Evaluated as one batched
    matmul ``x_src @ (conj(x) per part)`` over (channel, atom).
    """
    C, N, d, D = x_src.shape
    parts = sum_over_m(tuple(tau), x.real.dtype, x.device)
    per_part = x.conj()[..., None] * parts                                               # (C, N, D, n_l)
    dots = batched_matmul(x_src.reshape(C * N, d, D), per_part.reshape(C * N, D, parts.shape[1]))
    return dots.reshape(C, N, d, parts.shape[1]).permute(1, 2, 3, 0).flatten(2)
