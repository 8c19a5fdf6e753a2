"""so3net: SO(3)-equivariant neural networks in Fourier space.

The public API (names from DESIGN.md; see docs/conventions.md for every convention).
``CGproduct``, ``DiagCGproduct`` and ``CGsquare`` accept plain ``SO3vec``/``SO3part`` (eager, torch
autograd) and engine Variables (``SO3vecVar``, ``Input``), where they record a node.
"""
from .cg import clebsch_gordan, cg_block, cg_sparse
from .wigner import wigner_D, wigner_d, wigner_D_from_matrix, random_rotation
from .sph import spherical_harmonics, spherical_harmonics_all, solid_harmonics
from .plan import cg_plan, CGPlan
from .kernels import set_backend, get_backend, backend
from .types import SO3type, SO3part, SO3vec, Rscalar, Cscalar, Ctensor, cat, oplus
from .graph import (CGproduct, DiagCGproduct, CGsquare, NeuralNet, Input, SO3vecVar, Parameter, Variable,
                    grad, no_grad)
from .power import CGpower
from . import basis, data, fourier, graph, kernels, models, nn, power, types

__version__ = "0.1.0"
