"""Equivariant layers: per-l mixing, CG nonlinearity, normalisation, radial bases, edge features,
invariant read-outs and Cormorant's edge and CG levels. Features are packed SO(3)-vectors (see
``so3net.plan``): a type tau over B rows is a (B, dim) complex tensor."""
from ._layout import join_parts, mcn_parts, mcn_to_packed, packed_to_mcn, split_parts, tau_dim, uniform_tau
from .cglayer import CGLayer, EdgeLevel
from .edges import Neighbours, edge_harmonics, pair_dots, radius_graph, sum_over_m
from .linear import SO3Linear, init_complex_weight, mix_parts
from .norm import PartNorm, part_norm
from .products import (CGContraction, aggregate_messages, cg_square, channelwise_square_plan, contraction,
                       message_plan)
from .radial import BesselBasis, RadPolyTrig, SoftCutoff, cosine_cutoff, smooth_switch
from .readout import AtomMLP, invariants, num_invariants
from .power_layer import SymPowerReadout

__all__ = ["join_parts", "mcn_parts", "mcn_to_packed", "packed_to_mcn", "split_parts", "tau_dim", "uniform_tau",
           "CGLayer", "EdgeLevel", "Neighbours", "edge_harmonics", "pair_dots", "radius_graph", "sum_over_m",
           "SO3Linear", "init_complex_weight", "mix_parts", "PartNorm", "part_norm", "CGContraction",
           "aggregate_messages", "cg_square", "channelwise_square_plan", "contraction", "message_plan",
           "BesselBasis", "RadPolyTrig", "SoftCutoff", "cosine_cutoff", "smooth_switch", "AtomMLP", "invariants",
           "num_invariants", "SymPowerReadout"]
