"""Per-l normalisation of ``SO3vec``s.

``PartNorm`` divides every part l of each row by its root-mean-square magnitude
``sqrt(mean_{m, c} |F^l[m, c]|² + eps)`` and multiplies by a learned real gain g_l (initially 1).
The RMS is invariant (D^l unitary), so the layer is equivariant. It is an option on top of the
original Cormorant, which keeps activations in range with the level gain of the weight init
(:func:`so3net.nn.linear.init_complex_weight`) instead.
"""
from __future__ import annotations

import torch
from torch import nn

from ..types import SO3type, SO3vec

__all__ = ["part_norm", "PartNorm"]


def _mean_square(p: torch.Tensor) -> torch.Tensor:
    q = torch.view_as_real(p) if p.is_complex() else p[..., None]
    return q.square().sum(-1).mean(dim=(-2, -1), keepdim=True)


def part_norm(x: SO3vec, gains: torch.Tensor, eps: float = 1e-6) -> SO3vec:
    """``g_l F^l / sqrt(mean |F^l|² + eps)`` for every present part, row by row (``gains (L+1,)``)."""
    parts = {l: (p * (gains[l] * torch.rsqrt(_mean_square(p) + eps)) if p.shape[-1] else p)
             for l, p in x.parts.items()}
    return SO3vec(parts, basis=x.basis)


class PartNorm(nn.Module):
    """Module form of :func:`part_norm` for ``SO3vec``s of type ``tau``."""

    def __init__(self, tau, eps: float = 1e-6):
        super().__init__()
        self.tau, self.eps = tuple(SO3type(tau)), eps
        self.gains = nn.Parameter(torch.ones(len(self.tau)))

    def forward(self, x: SO3vec) -> SO3vec:
        return part_norm(x, self.gains, self.eps)
