"""Invariant read-outs of packed SO(3)-vectors, and the per-atom MLP.

:func:`invariants` of a vector of type tau returns, per row, the real and imaginary parts of the
l = 0 fragments and the squared norm ``Σ_m |F^l[m, c]|²`` of every fragment c of every part l:
``2 tau[0] + Σ_l tau[l]`` real numbers, invariant under ``F^l -> D^l F^l`` (D^0 = 1, D^l unitary).
"""
from __future__ import annotations

import torch
from torch import nn

from ._layout import split_parts, tau_dim

__all__ = ["invariants", "num_invariants", "ACTIVATIONS", "AtomMLP"]

ACTIVATIONS = {"leakyrelu": nn.LeakyReLU, "relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU,
               "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def num_invariants(tau) -> int:
    return 2 * tau[0] + sum(tau)


def invariants(x: torch.Tensor, tau) -> torch.Tensor:
    """``(B, 2 tau[0] + Σ tau)`` real invariants of packed ``x`` (see module doc)."""
    tau = tuple(tau)
    if x.dim() != 2 or x.shape[1] != tau_dim(tau):
        raise ValueError(f"invariants expects a packed (B, {tau_dim(tau)}) tensor of type {tau}, got {tuple(x.shape)}")
    parts = split_parts(x, tau)
    norms = [(p.real.square() + p.imag.square()).sum(1) for p in parts.values()]
    x0 = parts[0][:, 0] if 0 in parts else x.new_zeros(x.shape[0], 0)
    return torch.cat([x0.real, x0.imag] + norms, 1)


class AtomMLP(nn.Module):
    """Per-row MLP ``num_in -> hidden... -> num_out`` with the given activation (linear if no hidden)."""

    def __init__(self, num_in: int, hidden: tuple[int, ...] = (256,), num_out: int = 1, activation: str = "leakyrelu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers, width = [], num_in
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, num_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
