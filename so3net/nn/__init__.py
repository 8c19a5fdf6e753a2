"""Equivariant layers on ``SO3vec``s: per-l mixing, normalisation, radial bases, edge features,
invariant read-outs and Cormorant's edge and CG levels. The CG products are the kernels' channel-wise
products (:mod:`so3net.kernels.message`); features are ``SO3vec``s with one batch axis (atoms)."""
from .cglayer import CGLayer, EdgeLevel, edge_operand
from .edges import Neighbours, edge_harmonics, edge_vectors, pair_dots
from .linear import SO3Linear, init_complex_weight
from .norm import PartNorm, part_norm
from .radial import BesselBasis, RadPolyTrig, SoftCutoff, cosine_cutoff, smooth_switch
from .readout import AtomMLP, invariants, num_invariants
from .power_layer import SymPowerReadout

__all__ = ["CGLayer", "EdgeLevel", "edge_operand", "Neighbours", "edge_harmonics", "edge_vectors", "pair_dots",
           "SO3Linear", "init_complex_weight", "PartNorm", "part_norm", "BesselBasis", "RadPolyTrig", "SoftCutoff",
           "cosine_cutoff", "smooth_switch", "AtomMLP", "invariants", "num_invariants",
           "SymPowerReadout"]
