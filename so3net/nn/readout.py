"""Invariant read-outs of ``SO3vec``s, and the per-atom MLP.

:func:`invariants` of a vector of type tau returns, per row, the real and imaginary parts of the
l = 0 fragments and the squared norm ``Σ_m |F^l[m, c]|²`` of every fragment c of every part l:
``2 tau[0] + Σ_l tau[l]`` real numbers, invariant under ``F^l -> D^l F^l`` (D^0 = 1, D^l unitary).
"""
from __future__ import annotations

import torch
from torch import nn

from ..types import SO3vec

__all__ = ["invariants", "num_invariants", "ACTIVATIONS", "AtomMLP"]

ACTIVATIONS = {"leakyrelu": nn.LeakyReLU, "relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU,
               "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def num_invariants(tau) -> int:
    return 2 * tau[0] + sum(tau)


def invariants(x: SO3vec) -> torch.Tensor:
    """``(B, 2 tau[0] + Σ tau)`` real invariants of a batch of ``SO3vec``s ``(B,)`` (see module doc)."""
    if len(x.batch) != 1:
        raise ValueError(f"invariants expects one batch dimension, got batch shape {x.batch}")
    planes = {l: (torch.view_as_real(p) if p.is_complex() else p[..., None]) for l, p in x.parts.items()}
    norms = [q.square().sum((1, 3)) for q in planes.values()]
    x0 = planes[0][:, 0]
    return torch.cat([x0[..., 0], x0[..., 1] if x0.shape[-1] == 2 else torch.zeros_like(x0[..., 0])] + norms, 1)


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
