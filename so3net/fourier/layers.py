"""Spherical network layers in Fourier space (Spherical CNNs with Clebsch–Gordan nonlinearities).

A signal with ``c`` channels is an SO3vec whose parts carry the channel as the last batch
dimension: sphere signals ``(b, c, 2l+1, 1)``, group signals ``(b, c, 2l+1, 2l+1)``. The layers
are exactly the operations of :mod:`so3net.fourier.convolution` with learned filters, summed over
input channels, so each is equivariant: rotating the input by ``t`` multiplies every part by
``D^l(t)`` on the left. The nonlinearity is the pointwise square on the group, computed in
Fourier space by :func:`Fproduct` (CG coefficients, no grid). Invariant read-out: the l = 0 part and
the Frobenius norms per l (``‖D F‖ = ‖F‖``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._vec import make_vec, parts_of
from .convolution import Fproduct, so3_convolve, sphere_correlate

__all__ = ["S2Conv", "SO3Conv", "SO3Square", "so3_invariants"]


def _complex_param(*shape: int, scale: float, generator: torch.Generator | None) -> nn.Parameter:
    re = torch.randn(*shape, generator=generator)
    im = torch.randn(*shape, generator=generator)
    return nn.Parameter(torch.complex(re, im) * (scale / math.sqrt(2)))


class S2Conv(nn.Module):
    """Sphere -> group correlation with learned filters (Case 1 of :func:`sphere_correlate`):

        h_o(R) = Σ_i ∫ f_i(y) conj(g_{io}(R⁻¹ y)) dy,      H^l_o = Σ_i F^l_i (G^l_{io})^† / (2l+1).

    Input parts ``(b..., c_in, 2l+1, 1)``, output ``(b..., c_out, 2l+1, 2l+1)`` for l <= lmax.
    The filters' sphere coefficients ``G^l`` are complex parameters ``(c_in, c_out, 2l+1, 1)``.
    """

    def __init__(self, c_in: int, c_out: int, lmax: int, generator: torch.Generator | None = None):
        super().__init__()
        self.c_in, self.c_out, self.lmax = c_in, c_out, lmax
        self.filters = nn.ParameterList(
            [_complex_param(c_in, c_out, 2 * l + 1, 1, scale=(2 * l + 1) / math.sqrt(c_in), generator=generator)
             for l in range(lmax + 1)])

    def forward(self, x):
        parts = _channels(x, self.c_in, "S2Conv")
        G = {l: w.to(parts[0].dtype) for l, w in enumerate(self.filters)}
        F = {l: p[..., :, None, :, :] for l, p in parts.items() if l <= self.lmax}
        return make_vec({l: p.sum(-4) for l, p in sphere_correlate(F, G).parts.items()})


class SO3Conv(nn.Module):
    """Group convolution with learned filters (:func:`so3_convolve`):

        h_o(u) = Σ_i ∫ f_i(u v⁻¹) g_{io}(v) dv,      H^l_o = Σ_i F^l_i G^l_{io}.

    Input parts ``(b..., c_in, 2l+1, 2l+1)``, output ``(b..., c_out, 2l+1, 2l+1)`` for l <= lmax;
    the filters' Fourier matrices are complex parameters ``(c_in, c_out, 2l+1, 2l+1)``.
    """

    def __init__(self, c_in: int, c_out: int, lmax: int, generator: torch.Generator | None = None):
        super().__init__()
        self.c_in, self.c_out, self.lmax = c_in, c_out, lmax
        self.filters = nn.ParameterList(
            [_complex_param(c_in, c_out, 2 * l + 1, 2 * l + 1, scale=1 / math.sqrt(c_in * (2 * l + 1)),
                            generator=generator) for l in range(lmax + 1)])

    def forward(self, x):
        parts = _channels(x, self.c_in, "SO3Conv")
        G = {l: w.to(parts[0].dtype) for l, w in enumerate(self.filters)}
        F = {l: p[..., :, None, :, :] for l, p in parts.items() if l <= self.lmax}
        return make_vec({l: p.sum(-4) for l, p in so3_convolve(F, G).parts.items()})


class SO3Square(nn.Module):
    """The pointwise nonlinearity ``h(R) = f(R)²`` of every channel, in Fourier space by
    :func:`Fproduct` (truncated to ``l <= lmax``): the talk's CG nonlinearity."""

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = lmax

    def forward(self, x):
        return Fproduct(x, x, self.lmax)


def so3_invariants(x, eps: float = 1e-12) -> torch.Tensor:
    """Rotation invariants of group signals ``(b..., c, 2l+1, 2l+1)``: for every channel the real
    and imaginary parts of ``F^0`` and the norms ``sqrt(‖F^l‖² + eps)`` for l >= 1, as a real
    tensor ``(b..., c, lmax + 2)``."""
    parts = parts_of(x, "so3_invariants")
    if 0 not in parts:
        raise ValueError("so3_invariants needs the l = 0 part")
    f0 = parts[0][..., 0, 0]
    norms = [torch.sqrt(p.abs().square().sum((-1, -2)) + eps) for l, p in parts.items() if l > 0]
    return torch.stack([f0.real, f0.imag, *norms], -1)


def _channels(x, c: int, layer: str) -> dict[int, torch.Tensor]:
    parts = parts_of(x, f"{layer} input")
    if 0 not in parts:
        raise ValueError(f"{layer} input needs the l = 0 part")
    for l, p in parts.items():
        if p.dim() < 3 or p.shape[-3] != c:
            raise ValueError(f"{layer} expects parts (b..., c_in, 2l+1, n) with c_in = {c}; part l={l} has "
                             f"shape {tuple(p.shape)}")
    return parts
