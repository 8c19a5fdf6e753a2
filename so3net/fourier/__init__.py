"""Fourier space on the group: transforms on S² and SO(3), convolution, CG products, layers.

Conventions (DESIGN.md "Functions and their Fourier components"): sphere coefficients
``F^l = ∫ f Y^l`` with ``f = Σ F^l_m conj(Y^l_m)``; group coefficients ``F^l = ∫ f(R) D^l(R) dR``
(Haar mass 1) with ``f(R) = Σ_l (2l+1) Σ F^l_{mm'} conj(D^l_{mm'}(R))``, stored as SO3parts
``(b..., 2l+1, 2l+1)`` (rows m, fragments m'). Rotating a function by t maps F^l to D^l(t) F^l;
group convolution has components F^l G^l.
"""
from .grids import SO3Grid, SphereGrid, driscoll_healy_weights, so3_grid, sphere_grid
from .transforms import so3_evaluate, so3_forward, so3_inverse, sphere_evaluate, sphere_forward, sphere_inverse
from .convolution import Fproduct, so3_convolve, sphere_convolve, sphere_correlate
from .layers import S2Conv, SO3Conv, SO3Square, so3_invariants

__all__ = ["SphereGrid", "SO3Grid", "sphere_grid", "so3_grid", "driscoll_healy_weights",
           "sphere_forward", "sphere_inverse", "so3_forward", "so3_inverse", "sphere_evaluate",
           "so3_evaluate", "so3_convolve", "sphere_correlate", "sphere_convolve", "Fproduct",
           "S2Conv", "SO3Conv", "SO3Square", "so3_invariants"]
