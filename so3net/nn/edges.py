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

from ..kernels import message
from ..kernels.message import Neighbours
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


def pair_dots(x: SO3vec, sources: torch.Tensor | None = None, rows: torch.Tensor | Neighbours | None = None) -> torch.Tensor:
    """Atom-pair scalars ``(F_i · F_j)_{l,c} = Σ_m conj(F_i^l[m, c]) F_j^l[m, c]`` for every slot.

    ``x``: atom features (batch (n_atoms,)), C fragments in every present part; ``rows``: the
    neighbour list itself (a :class:`Neighbours`; its rows are read as it says), or the atom of each
    of the N rows (``Neighbours.dst``; None: all atoms in order) with ``sources`` given;
    ``sources``: the slots' source features as :meth:`Neighbours.sources` gives them, ``(C, N, d, D)``
    (formed here when ``rows`` is a list and they are needed). Returns complex ``(N, d, n_l C)``, l
    major and channel minor (n_l present parts). Invariant because every D^l is unitary. With a
    list and complex data under the "native" backend the compiled kernel reads the features in
    place (:func:`so3net.kernels.message.pair_dots`); otherwise one batched matmul ``sources @
    (conj(F_i) per part)`` over (channel, atom).
    """
    C = next(n for n in x.tau if n)
    parts, first = [], 0
    for l, n in enumerate(x.tau):
        if n:
            parts.append((first, 2 * l + 1))
            first += 2 * l + 1
    return message.pair_dots(x.packed(), C, parts, rows, sources)
