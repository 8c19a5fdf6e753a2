"""Checks of atom positions before a model sees them: finite coordinates, no coincident atoms.

Two atoms at one place have ``r = 0``, where the radial bases diverge (``r^-p`` of
:class:`~so3net.nn.RadPolyTrig``, ``1/r`` of :class:`~so3net.nn.BesselBasis`) and training turns
to NaN. Errors name the molecule (its value in ``batch``), the atoms numbered within the molecule
and their rows of ``positions``.
"""
from __future__ import annotations

import torch

from .edges import Neighbours

__all__ = ["MIN_DISTANCE", "check_finite_positions", "check_separation"]

#: atoms closer than this (in the positions' length unit) count as coincident; the same value as
#: ``so3net.data.COINCIDENT``, which the data readers apply
MIN_DISTANCE = 1e-3


def _within_molecule(batch: torch.Tensor, row: int) -> tuple[int, int]:
    """``(molecule, number of the atom within its molecule)`` of a row of positions."""
    mol = int(batch[row])
    return mol, int((batch[:row] == mol).sum())


def check_finite_positions(positions: torch.Tensor, batch: torch.Tensor) -> None:
    """Raise a ``ValueError`` naming the first atom with a NaN or infinite coordinate."""
    bad = ~torch.isfinite(positions.detach()).all(1)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        mol, atom = _within_molecule(batch, row)
        raise ValueError(f"molecule {mol}: atom {atom} (row {row} of positions) has a non-finite position "
                         f"{positions.detach()[row].tolist()}; expected finite coordinates")


def check_separation(r: torch.Tensor, nbrs: Neighbours, batch: torch.Tensor, tol: float = MIN_DISTANCE,
                     order: torch.Tensor | None = None) -> None:
    """Raise a ``ValueError`` naming the first pair of neighbours closer than ``tol``; ``r (N, d)``
    are the slot lengths of ``nbrs`` (:func:`so3net.nn.edges.edge_vectors`), of any rows. ``batch``
    is that of the positions as given; ``order``: the row of the positions of each node of ``nbrs``
    when its nodes were renumbered (:meth:`Neighbours.grouped`)."""
    close = nbrs.mask & (r.detach() < tol)
    if close.any():
        i, k = (int(v) for v in close.nonzero()[0])
        pair = (int(nbrs.rows()[i]), int(nbrs.src[i, k]))
        rows = sorted(pair if order is None else (int(order[pair[0]]), int(order[pair[1]])))
        mol, a = _within_molecule(batch, rows[0])
        b = _within_molecule(batch, rows[1])[1]
        raise ValueError(f"molecule {mol}: atoms {a} and {b} (rows {rows[0]} and {rows[1]} of positions) are "
                         f"{float(r.detach()[i, k]):.2g} apart; expected distinct positions, at least {tol} apart "
                         "(the radial basis diverges at r = 0)")
