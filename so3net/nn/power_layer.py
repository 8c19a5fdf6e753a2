"""Symmetric-power read-out: a higher body order for Cormorant's atom features (the talk's SP programs).

For the atom features ``F_i`` of one CG level (type (C, ..., C), l = 0..maxl, channel c carrying the
SO(3)-vector ``F_{i,c} = ⊕_l F^l_{i,c}``), the layer forms MACE's weighted symmetric contraction

    B^L_{i,c} = Σ_{ν=1..K} Σ_f  w^{(ν)}_{Z_i, f, c} · Sym^ν(F_{i,c})^L_f           L = 0..maxl

where ``Sym^ν(F_{i,c})^L_f`` runs over the irreducible fragments of degree L of the ν-th symmetric
tensor power (each exactly as often as Sym^ν contains V_L, by the character formula of
:mod:`so3net.power.characters`; each a product of CG products of F's parts, computed by the
compiled power program :func:`so3net.power.power_program`), and ``w`` are learned real weights
per element ``Z_i``, degree ν, output fragment f and channel c. Weights only mix fragments of
one L, so ``B`` is equivariant: ``F^l -> D^l F^l`` for all l gives ``B^L -> D^L B^L``. ``B`` is a
polynomial of degree K in ``F``; the read-out takes its invariants (:func:`so3net.nn.invariants`:
real and imaginary parts of ``B^0``, squared norms ``Σ_m |B^L_{m,c}|²``).

Body order: ``F^s_i`` of Cormorant's level s already holds products of up to 2^s neighbour terms
(the CG square ``F ⊗ F`` of every layer); ``Sym^K`` multiplies K copies, so the read-out sees
polynomials of degree K·(degree of F) in the edge features, with all K-fold couplings of the
channel's parts, not only the pairwise square.
"""
from __future__ import annotations

import torch
from torch import nn

from ..power.contraction import SymmetricContraction
from ..types import SO3type, SO3vec
from .readout import invariants, num_invariants

__all__ = ["SymPowerReadout"]


class SymPowerReadout(nn.Module):
    """``invariants(B)`` of the weighted symmetric contraction ``B`` of order ``correlation`` (module doc).

    ``forward(x, species_index)``: ``x`` the atom features, an ``SO3vec`` of batch (N,) and type
    (C, ..., C) (complex), ``species_index (N,)`` element indices in ``[0, num_species)``; returns
    ``(N, num_out)`` real invariants with ``num_out = num_invariants((C,) * (maxl+1))``.
    """

    def __init__(self, channels: int, maxl: int, correlation: int, num_species: int):
        super().__init__()
        if correlation < 1:
            raise ValueError(f"the symmetric power needs correlation (K) >= 1, got {correlation}")
        self.tau = SO3type((channels,) * (maxl + 1))
        self.contraction = SymmetricContraction(channels, maxl, correlation, maxl, num_species, basis="complex")
        self.num_out = num_invariants(self.tau)

    def contract(self, x: SO3vec, species_index: torch.Tensor) -> SO3vec:
        """The contraction ``B``, an SO3vec of type (C, ..., C), same dtype as ``x``."""
        if not isinstance(x, SO3vec) or x.tau != self.tau:
            got = x.tau if isinstance(x, SO3vec) else type(x).__name__
            raise ValueError(f"SymPowerReadout expects an SO3vec of type {self.tau}, got {got}")
        return self.contraction(x, species_index)

    def forward(self, x: SO3vec, species_index: torch.Tensor) -> torch.Tensor:
        return invariants(self.contract(x, species_index))
