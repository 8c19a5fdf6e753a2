"""Packing molecules into batches of torch tensors, and a seeded batch iterator.

A :class:`Batch` of M molecules with N atoms in total holds ``positions`` (N, 3), ``species``
(N,) int64, ``batch`` (N,) int64 molecule index (nondecreasing: the atoms of a molecule are
contiguous and molecules keep their order), ``counts`` (M,), ``energies`` (M,) or None,
``forces`` (N, 3) or None, ``ids`` (M,) and the dataset's ``units``.
"""
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from .dataset import MolecularDataset


@dataclass
class Batch:
    positions: torch.Tensor
    species: torch.Tensor
    batch: torch.Tensor
    counts: torch.Tensor
    energies: Optional[torch.Tensor] = None
    forces: Optional[torch.Tensor] = None
    ids: Optional[torch.Tensor] = None
    units: dict = field(default_factory=dict)

    @property
    def n_molecules(self):
        return len(self.counts)

    def to(self, device=None, dtype=None):
        """Move to ``device``; ``dtype`` changes the floating tensors only."""
        def move(t, floating):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if floating else None)
        return replace(self, positions=move(self.positions, True), species=move(self.species, False),
                       batch=move(self.batch, False), counts=move(self.counts, False),
                       energies=move(self.energies, True), forces=move(self.forces, True),
                       ids=move(self.ids, False))


def collate(molecules, dtype=torch.float32, device=None, units=None):
    """Pack a :class:`MolecularDataset` (its units are kept) or a non-empty list of
    :class:`Molecule` (``units`` recorded as given) into one :class:`Batch`."""
    if isinstance(molecules, MolecularDataset):
        return _batch_from_arrays(molecules, np.arange(len(molecules)), dtype, device, dict(molecules.units))
    molecules = list(molecules)
    if not molecules:
        raise ValueError("collate needs at least one molecule")
    packed = MolecularDataset.from_molecules(molecules, units=units or {"energy": "eV", "length": "Angstrom"})
    return _batch_from_arrays(packed, np.arange(len(packed)), dtype, device, dict(units or {}))


def _batch_from_arrays(dataset, index, dtype, device, units):
    atoms = dataset.atom_index(index)
    counts = dataset.counts[index]
    tensor = lambda a, t: None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=t, device=device)
    return Batch(positions=tensor(dataset.positions[atoms], dtype),
                 species=tensor(dataset.species[atoms], torch.long),
                 batch=torch.repeat_interleave(torch.arange(len(index), device=device),
                                               tensor(counts, torch.long)),
                 counts=tensor(counts, torch.long),
                 energies=None if dataset.energies is None else tensor(dataset.energies[index], dtype),
                 forces=None if dataset.forces is None else tensor(dataset.forces[atoms], dtype),
                 ids=tensor(dataset.ids[index], torch.long), units=units)


def batch_indices(n, batch_size, *, shuffle=True, seed=0, epoch=0, drop_last=False, rank=0, world_size=1):
    """Molecule indices of each batch of one epoch, for process ``rank`` of ``world_size``.

    Order: ``numpy.random.default_rng([seed, epoch]).permutation(n)`` when shuffling, else
    ``arange(n)``; cut into global batches of ``batch_size`` (the last one shorter unless
    ``drop_last``). Each global batch is split into ``world_size`` contiguous parts with
    ``numpy.array_split``; rank r gets part r, so the ranks' parts concatenated in rank order are
    exactly the single-process batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [np.array_split(order[i:i + batch_size], world_size)[rank] for i in range(0, stop, batch_size)]


def iterate_batches(dataset, batch_size, *, shuffle=True, seed=0, epoch=0, drop_last=False,
                    rank=0, world_size=1, start=0, dtype=torch.float32, device=None):
    """Yield the :class:`Batch` es of one epoch (see :func:`batch_indices`), from batch ``start`` on
    (to resume mid-epoch)."""
    batches = batch_indices(len(dataset), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                            drop_last=drop_last, rank=rank, world_size=world_size)
    for index in batches[start:]:
        yield _batch_from_arrays(dataset, index, dtype, device, dict(dataset.units))
