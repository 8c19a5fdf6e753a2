"""Molecular data: readers (QM9, MD17/sGDML, revised MD17, extended XYZ), the in-memory
:class:`MolecularDataset`, units, splits, neighbour lists and batching.

Imports numpy and torch only (ase lazily, for XYZ files).
"""
from .batching import Batch, batch_indices, collate, iterate_batches
from .dataset import COINCIDENT, Molecule, MolecularDataset
from .errors import DataFormatError
from .load import DEFAULT_DATASET, SHIPPED, load, shipped_path
from .neighbors import radius_graph
from .npz import read_md17, read_rmd17
from .qm9 import ATOM_REFERENCE, read_qm9_xyz, read_qm9pack, uncharacterized_indices
from .splits import Split, md17_split, paper_split, qm9_split, random_split
from .units import ENERGY_UNITS, LENGTH_UNITS, convert_energy, energy_factor, length_factor
from .xyz import read_extxyz

__all__ = [
    "Batch", "batch_indices", "collate", "iterate_batches", "COINCIDENT", "Molecule", "MolecularDataset",
    "DataFormatError", "DEFAULT_DATASET", "SHIPPED", "load", "shipped_path", "radius_graph",
    "read_md17", "read_rmd17", "ATOM_REFERENCE", "read_qm9_xyz", "read_qm9pack",
    "uncharacterized_indices", "Split", "md17_split", "paper_split", "qm9_split", "random_split",
    "ENERGY_UNITS", "LENGTH_UNITS", "convert_energy", "energy_factor", "length_factor", "read_extxyz",
]
