"""Edges of a batch of molecules: geometry, spherical harmonics and atom-pair scalars over the
padded neighbour layout.

Conventions: atoms of all molecules are flattened, ``batch[a]`` is the molecule of atom a. Edges
come from :func:`so3net.data.radius_graph` (the one neighbour list of the library); an edge
(src j -> dst i) carries the message from j to i, its vector is ``r_ij = r_j - r_i`` (from atom i
to its neighbour j). The layers use the padded layout :class:`so3net.kernels.message.Neighbours`:
slot ``(i, k)`` holds the k-th neighbour of atom i; empty slots read zero features and get a
placeholder vector of length ``far`` beyond every cutoff, so every edge quantity vanishes there.
"""
from __future__ import annotations

import torch

from ..kernels.message import Neighbours, batched_matmul
from ..sph import spherical_harmonics_all
from ..types import SO3vec

__all__ = ["Neighbours", "edge_vectors", "edge_harmonics", "pair_dots"]


def edge_vectors(nbrs: Neighbours, positions: torch.Tensor, far: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r_ij (n, d, 3), |r_ij| (n, d))`` per slot (row i: node ``nbrs.rows()[i]``); empty slots get
    the constant vector (0, 0, far)."""
    here = nbrs.at_rows(positions)
    vec = nbrs.gather(positions) - here[:, None, :]
    placeholder = vec.new_tensor([0.0, 0.0, far])
    vec = torch.where(nbrs.mask[..., None], vec, placeholder)
    return vec, vec.norm(dim=-1)


def edge_harmonics(vec: torch.Tensor, lmax: int) -> torch.Tensor:
    """``Y^l(r̂)`` for l = 0..lmax of vectors ``(..., 3)`` (:func:`so3net.sph.spherical_harmonics_all`,
    so ``Y^l(R r) = D^l(R) Y^l(r)``): packed ``(..., (lmax+1)²)`` complex, part l at ``[l², (l+1)²)``."""
    if vec.numel() == 0:  # no edges at all (isolated atoms): nothing to evaluate or differentiate
        dtype = torch.complex128 if vec.dtype == torch.float64 else torch.complex64
        return torch.zeros(vec.shape[:-1] + ((lmax + 1) ** 2,), dtype=dtype, device=vec.device)
    return torch.cat(list(spherical_harmonics_all(lmax, vec).values()), -1)


def pair_dots(x: SO3vec, sources: torch.Tensor, rows: torch.Tensor | Neighbours | None = None) -> torch.Tensor:
    """Atom-pair scalars ``(F_i · F_j)_{l,c} = Σ_m conj(F_i^l[m, c]) F_j^l[m, c]`` for every slot.

    ``x``: atom features (batch (n_atoms,)), C fragments in every present part; ``sources``: the slots'
    source features as :meth:`Neighbours.sources` gives them, ``(C, N, d, D)``; ``rows``: the atom
    of each of the N rows (``Neighbours.dst``, or the list itself, which reads consecutive rows as a
    slice; None: all atoms in order). Returns complex
    ``(N, d, n_l C)``, l major and channel minor (n_l present parts). Invariant because every D^l is
    unitary. One batched matmul ``sources @ (conj(F_i) per part)`` over (channel, atom).
    """
    C, N, d, D = sources.shape
    ls = [l for l, n in enumerate(x.tau) if n]
    member = torch.zeros(D, len(ls), dtype=sources.real.dtype, device=sources.device)
    first = 0
    for i, l in enumerate(ls):
        member[first:first + 2 * l + 1, i] = 1
        first += 2 * l + 1
    xp = x.packed()
    if isinstance(rows, Neighbours):
        xp = rows.at_rows(xp)
    elif rows is not None:
        xp = xp.index_select(0, rows)
    per_part = xp.reshape(N, D, C).permute(2, 0, 1).conj()[..., None] * member     # (C, N, D, n_l)
    dots = batched_matmul(sources.reshape(C * N, d, D), per_part.reshape(C * N, D, len(ls)))
    return dots.reshape(C, N, d, len(ls)).permute(1, 2, 3, 0).flatten(2)
