"""so3net: SO(3)-equivariant neural networks in Fourier space.

Public API only; see docs/conventions.md for the fixed conventions.
"""
from .cg import clebsch_gordan, cg_block, cg_sparse
from .wigner import wigner_D, wigner_d, wigner_D_from_matrix, random_rotation

__version__ = "0.1.0"
