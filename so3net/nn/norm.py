"""Per-l normalisation of packed SO(3)-vectors.

``PartNorm`` divides every part l of each row by its root-mean-square magnitude
``sqrt(mean_{m, c} |F^l[m, c]|² + eps)`` and multiplies by a learned real gain g_l (initially 1).
The RMS is invariant (D^l unitary), so the layer is equivariant. It is an option on top of the
original Cormorant, which keeps activations in range with the level gain of the weight init
(:func:`so3net.nn.linear.init_complex_weight`) instead.
"""
from __future__ import annotations

import torch
from torch import nn

from ._layout import check_tau, join_parts, split_parts

__all__ = ["part_norm", "PartNorm"]


def part_norm(parts: dict[int, torch.Tensor], gains: dict[int, torch.Tensor], eps: float = 1e-6) -> dict[int, torch.Tensor]:
    """``{l: g_l F^l / sqrt(mean |F^l|² + eps)}`` row by row."""
    out = {}
    for l, p in parts.items():
        ms = (p.real.square() + p.imag.square()).mean(dim=(1, 2), keepdim=True) if p.is_complex() else \
            p.square().mean(dim=(1, 2), keepdim=True)
        out[l] = p * (gains[l] * torch.rsqrt(ms + eps))
    return out


class PartNorm(nn.Module):
    """Module form of :func:`part_norm` for packed vectors of type ``tau``."""

    def __init__(self, tau, eps: float = 1e-6):
        super().__init__()
        self.tau, self.eps = check_tau(tau), eps
        self.gains = nn.Parameter(torch.ones(len(self.tau)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = split_parts(x, self.tau)
        return join_parts(part_norm(parts, {l: self.gains[l] for l in parts}, self.eps))[0]
