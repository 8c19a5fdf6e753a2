"""Weighted symmetric contraction: MACE's product basis on symmetric power programs.

Channel-wise: every sample b and channel c carries its own SO(3)-vector x_{b,c} of type
(1, 1, ..., 1) (one fragment per l = 0..lmax_in). The contraction is

    B^L_{b,c} = Σ_{ν=1..K} Σ_f  w^{(ν)}_{b,f,c} · Sym^ν(x_{b,c})^L_f          (L = 0..maxl)

where f runs over the fragments of Sym^ν at degree L (exactly its character multiplicity, see
:mod:`so3net.power.program`) and the weights are given per sample — MACE selects them by chemical
element: ``w_b = W[species_b]``. Since the weights only mix fragments of one L, B is equivariant
for any weights, and a degree-ν polynomial in x.

Layouts. Channel-wise packed features are ``(B, C, dim)`` with ``dim = Σ_l (2l+1)`` (parts in l
order, the packed layout of :mod:`so3net.plan` for one fragment per l); the output is
``(B, C, Σ_{L<=maxl} (2L+1))`` likewise. Weights of degree ν are ``(B, n_ν, C)`` (per sample) or
``(E, n_ν, C)`` (per element) with ``n_ν = Σ_L mult_ν(L)``, fragments in the order of the packed
degree-ν output (L ascending, then the program's fragment order).
"""
from __future__ import annotations

import math

import torch

from ..types import SO3vec
from .program import PowerProgram, power_program

__all__ = ["symmetric_contraction", "SymmetricContraction", "contraction_program", "to_channelwise",
           "from_channelwise"]


def to_channelwise(v: SO3vec) -> torch.Tensor:
    """SO3vec of type (C, ..., C), parts (B, 2l+1, C) -> channel-wise packed (B, C, Σ_l (2l+1))."""
    counts = set(v.tau)
    if len(counts) != 1 or len(v.batch) != 1:
        raise ValueError(f"the channel-wise contraction needs an SO3vec of type (C, ..., C) with one batch "
                         f"dimension, got type {v.tau} and batch {v.batch}")
    return torch.cat([v.parts[l].transpose(-1, -2) for l in range(len(v.tau))], -1)


def from_channelwise(x: torch.Tensor, maxl: int, basis: str = "complex") -> SO3vec:
    """Channel-wise packed (B, C, Σ_{l<=maxl} (2l+1)) -> SO3vec of type (C, ..., C)."""
    return SO3vec({l: x[:, :, l * l:(l + 1) ** 2].transpose(1, 2) for l in range(maxl + 1)}, basis=basis)


def contraction_program(lmax_in: int, correlation: int, maxl: int, basis: str = "complex") -> PowerProgram:
    """The program of Sym^1..Sym^correlation of one fragment per l <= lmax_in, parts L <= maxl."""
    return power_program((1,) * (lmax_in + 1), tuple(range(1, correlation + 1)), maxl, basis)


def _check(x: torch.Tensor, weights, program: PowerProgram) -> None:
    dim = program.plans[0].dim2 if program.plans else sum(2 * l + 1 for l in range(len(program.tau)))
    if x.dim() != 3 or x.shape[2] != dim:
        raise ValueError(f"x must be channel-wise packed (B, C, {dim}) for lmax_in={len(program.tau) - 1}, "
                         f"got {tuple(x.shape)}")
    if len(weights) != len(program.degrees):
        raise ValueError(f"need one weight tensor per degree {program.degrees}, got {len(weights)}")
    for j, w in zip(program.degrees, weights):
        n = sum(program.out_type(j))
        if w.shape != (x.shape[0], n, x.shape[1]):
            raise ValueError(f"weights of degree {j} must have shape (B, n, C) = {(x.shape[0], n, x.shape[1])}, "
                             f"got {tuple(w.shape)}")


def symmetric_contraction(x: torch.Tensor, weights, program: PowerProgram) -> torch.Tensor:
    """``B = Σ_ν w^(ν) · Sym^ν(x)`` channel-wise (module docstring); per-sample ``weights[i]`` of
    shape (B, n_ν, C) for ``ν = program.degrees[i]``. Returns (B, C, Σ_{L<=maxl} (2L+1))."""
    _check(x, weights, program)
    B, C, dim = x.shape
    levels = program.levels(x.reshape(B * C, dim))
    outs = [0] * (program.maxl + 1)
    for j, w in zip(program.degrees, weights):
        packed = program.output(levels, j).reshape(B, C, -1)
        w = w.to(packed.dtype)
        start, first = 0, 0
        for L, n in enumerate(program.out_type(j)):
            part = packed[:, :, start:start + (2 * L + 1) * n].reshape(B, C, 2 * L + 1, n)
            outs[L] = outs[L] + torch.einsum("bcmn,bnc->bcm", part, w[:, first:first + n])
            start, first = start + (2 * L + 1) * n, first + n
    return torch.cat([o if torch.is_tensor(o) else x.new_zeros(B, C, 2 * L + 1) for L, o in enumerate(outs)], 2)


class SymmetricContraction(torch.nn.Module):
    """MACE's product basis with per-element weights (module docstring).

    ``forward(x, species)``: ``x`` channel-wise packed ``(B, channels, Σ_{l<=lmax_in} (2l+1))``
    (complex, or real with ``basis="real"``), ``species`` either element indices ``(B,)`` or
    weights over elements ``(B, num_elements)`` (MACE's one-hot ``y``). Weights are real
    parameters ``weights[ν-1]`` of shape (num_elements, n_ν, channels), initialised with
    variance 1/n_ν.
    """

    def __init__(self, channels: int, lmax_in: int, correlation: int, maxl: int, num_elements: int = 1,
                 basis: str = "complex", dtype: torch.dtype = torch.float32):
        super().__init__()
        self.program = contraction_program(lmax_in, correlation, maxl, basis)
        self.channels, self.num_elements = channels, num_elements
        self.weights = torch.nn.ParameterList()
        for j in self.program.degrees:
            n = sum(self.program.out_type(j))
            self.weights.append(torch.nn.Parameter(torch.randn(num_elements, n, channels, dtype=dtype)
                                                   / math.sqrt(max(n, 1))))

    def sample_weights(self, species: torch.Tensor) -> list[torch.Tensor]:
        if species.dim() == 1 and not species.is_floating_point():
            return [w[species] for w in self.weights]
        if species.dim() == 2 and species.shape[1] == self.num_elements:
            return [torch.einsum("be,enc->bnc", species.to(w.dtype), w) for w in self.weights]
        raise ValueError(f"species must be element indices (B,) or weights (B, {self.num_elements}), "
                         f"got {tuple(species.shape)} of {species.dtype}")

    def forward(self, x, species: torch.Tensor):
        """Channel-wise packed ``x (B, C, dim)`` -> ``(B, C, dim_out)``; or an SO3vec of type
        (C, ..., C) with parts (B, 2l+1, C) -> an SO3vec of type (C, ..., C) (l <= maxl)."""
        if isinstance(x, SO3vec):
            return from_channelwise(self.forward(to_channelwise(x), species), self.program.maxl, x.basis)
        return symmetric_contraction(x, self.sample_weights(species), self.program)
