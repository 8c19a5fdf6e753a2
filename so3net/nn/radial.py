"""Radial bases and cutoffs of edge lengths ``r`` (Å; any unit works if used consistently).

- :class:`RadPolyTrig`: Cormorant's basis ``r^{-p} sin(2π s_k r + φ_k)`` for p = 0..P and
  2(T+1) learnable (scale, phase) pairs, basis_set = (T, P); initially s = (0..T, 0..T) and
  φ = (π/2, 0, .., 0, π/2, .., π/2), i.e. sines and cosines of 2π k r (the sin(0) is replaced by 1).
- :class:`BesselBasis`: smooth Bessel ``sqrt(2/r_c) sin(n π r / r_c) / r · f_c(r)``, n = 1..num, with
  the cosine cutoff ``f_c``; frequencies learnable optionally.
- :func:`cosine_cutoff` ``f_c(r) = (1 + cos(π r / r_c)) / 2`` for r < r_c, else 0 (C¹ at r_c).
- :func:`smooth_switch`: 1 below ``r_on``, cosine ramp to 0 at ``r_off`` (C¹); the smooth hard cutoff.
- :class:`SoftCutoff`: Cormorant's per-channel ``sigmoid((ρ_c - r) / w_c)`` with learnable ρ, w.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..graph.geometry import cosine_cutoff_values

__all__ = ["RadPolyTrig", "BesselBasis", "cosine_cutoff", "smooth_switch", "SoftCutoff", "SOFT_MODES"]

SOFT_MODES = ("none", "fixed", "learn", "learn_rad", "learn_width")


class RadPolyTrig(nn.Module):
    """Cormorant's trigonometric/power radial basis of ``r (...)``; output ``(..., 2 (T+1) (P+1))``."""

    def __init__(self, basis_set: tuple[int, int] = (3, 3)):
        super().__init__()
        trig, rpow = (int(b) for b in basis_set)
        if trig < 0 or rpow < 0:
            raise ValueError(f"basis_set must be two integers >= 0 (trig, power), got {basis_set}")
        self.rpow = rpow
        scales = torch.cat([torch.arange(trig + 1.0), torch.arange(trig + 1.0)])
        phases = torch.cat([torch.zeros(trig + 1), torch.full((trig + 1,), math.pi / 2)])
        phases[0] = math.pi / 2  # sin(0 r + 0) = 0 would waste a function
        self.scales, self.phases = nn.Parameter(scales), nn.Parameter(phases)

    @property
    def num_basis(self) -> int:
        return self.scales.numel() * (self.rpow + 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        trig = torch.sin((2 * math.pi) * self.scales * r[..., None] + self.phases)         # (..., K)
        powers = torch.stack([r.pow(-p) for p in range(self.rpow + 1)], -1)                 # (..., P+1)
        return (powers[..., :, None] * trig[..., None, :]).flatten(-2)


cosine_cutoff = cosine_cutoff_values   # ``(1 + cos(π r / r_cut)) / 2`` for r < r_cut, 0 beyond: written once


def smooth_switch(r: torch.Tensor, r_on: float, r_off: float) -> torch.Tensor:
    """1 for r <= r_on, ``(1 + cos(π (r - r_on) / (r_off - r_on))) / 2`` up to r_off, 0 beyond.

    ``r_on >= r_off`` gives the sharp step ``r < r_off``.
    """
    if r_on >= r_off:
        return (r < r_off).to(r.dtype)
    t = ((r - r_on) / (r_off - r_on)).clamp(0, 1)
    return 0.5 * (torch.cos(math.pi * t) + 1)


class BesselBasis(nn.Module):
    """Smooth Bessel basis with cosine cutoff of ``r (...)``; output ``(..., num)``."""

    def __init__(self, num: int = 8, r_cut: float = 3.0, learnable: bool = False):
        super().__init__()
        if num < 1 or r_cut <= 0:
            raise ValueError(f"BesselBasis needs num >= 1 and r_cut > 0, got num={num}, r_cut={r_cut}")
        self.r_cut = float(r_cut)
        freq = torch.arange(1.0, num + 1) * (math.pi / r_cut)
        self.freq = nn.Parameter(freq) if learnable else nn.Buffer(freq)

    @property
    def num_basis(self) -> int:
        return self.freq.numel()

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        b = math.sqrt(2 / self.r_cut) * torch.sin(self.freq * r[..., None]) / r[..., None]
        return b * cosine_cutoff(r, self.r_cut)[..., None]


class SoftCutoff(nn.Module):
    """Per-channel sigmoid mask ``sigmoid((|ρ_c| - r) / max(|w_c|, eps))``; output ``(..., C)``.

    ``mode``: "fixed" (ρ, w constant), "learn" (both learned), "learn_rad", "learn_width".
    """

    def __init__(self, num_channels: int, radius: float, width: float, mode: str = "learn", eps: float = 1e-8):
        super().__init__()
        if mode not in SOFT_MODES[1:]:
            raise ValueError(f"soft cutoff mode must be one of {SOFT_MODES[1:]}, got {mode!r}")
        if radius <= 0 or width <= 0:
            raise ValueError(f"soft cutoff needs radius > 0 and width > 0, got {radius} and {width}")
        rad, wid = torch.full((num_channels,), float(radius)), torch.full((num_channels,), float(width))
        self.radius = nn.Parameter(rad) if mode in ("learn", "learn_rad") else nn.Buffer(rad)
        self.width = nn.Parameter(wid) if mode in ("learn", "learn_width") else nn.Buffer(wid)
        self.eps = eps

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        width = self.width.abs().clamp_min(self.eps)
        return torch.sigmoid((self.radius.abs() - r[..., None]) / width)
