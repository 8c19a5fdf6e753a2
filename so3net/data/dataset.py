"""The in-memory dataset every reader returns: molecules of any sizes, packed end to end."""
from typing import NamedTuple, Optional

import numpy as np

from .splits import Split, random_split
from .units import canonical_unit, energy_factor, length_factor


#: atoms of one molecule closer than this (in the data's length unit) are refused as coincident:
#: far below any bond, and the radial bases diverge (r^-p) where two atoms share a position
COINCIDENT = 1e-3


def first_close_pair(positions, counts, tol=COINCIDENT):
    """``(molecule, a, b, distance)`` of the first molecule with two atoms a < b (numbered within the
    molecule) closer than ``tol``, or None. Molecules of one size are compared in vectorised chunks."""
    offsets = np.concatenate([[0], np.cumsum(counts)])
    found = None
    for n in np.unique(counts):
        if n < 2:
            continue
        mols = np.flatnonzero(counts == n)
        for chunk in np.array_split(mols, -(-len(mols) * n * n // 2_000_000)):
            p = positions[offsets[chunk][:, None] + np.arange(n)]                        # (k, n, 3)
            diff = p[:, :, None] - p[:, None]
            d2 = np.einsum("kabx,kabx->kab", diff, diff) + np.diag(np.full(n, np.inf))
            hits = np.argwhere(d2 < tol * tol)
            if len(hits) and (found is None or chunk[hits[0, 0]] < found[0]):
                k, a, b = hits[0]
                found = (int(chunk[k]), int(a), int(b), float(np.sqrt(d2[k, a, b])))
                break
    return found


class Molecule(NamedTuple):
    """One molecule: positions (n, 3), species (n,), energy (float or None), forces (n, 3) or None."""
    positions: np.ndarray
    species: np.ndarray
    energy: Optional[float] = None
    forces: Optional[np.ndarray] = None
    id: int = -1


def _frozen(array, dtype):
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


class MolecularDataset:
    """Molecules of possibly different sizes with energies and, optionally, forces.

    Layout (all numpy, read-only):
      - ``positions`` (N, 3) float64 in ``units["length"]``, the atoms of all molecules end to end;
      - ``species`` (N,) int64 atomic numbers;
      - ``counts`` (M,) int64 atoms per molecule; molecule i owns atoms
        ``offsets[i]:offsets[i + 1]`` with ``offsets = [0, cumsum(counts)]``;
      - ``energies`` (M,) float64 in ``units["energy"]``, or None (e.g. structures to predict);
      - ``forces`` (N, 3) float64 in ``units["energy"] / units["length"]``, or None;
      - ``ids`` (M,) int64: each molecule's record number in its source (frame index, GDB9 index).
    ``units`` is ``{"energy": ..., "length": ...}`` with names from :mod:`so3net.data.units`.
    """

    def __init__(self, positions, species, counts, energies=None, forces=None, *, units,
                 ids=None, name=""):
        self.positions = _frozen(positions, np.float64).reshape(-1, 3)
        self.species = _frozen(species, np.int64).reshape(-1)
        self.counts = _frozen(counts, np.int64).reshape(-1)
        self.energies = None if energies is None else _frozen(energies, np.float64).reshape(-1)
        self.forces = None if forces is None else _frozen(forces, np.float64).reshape(-1, 3)
        self.ids = _frozen(np.arange(len(self.counts)) if ids is None else ids, np.int64).reshape(-1)
        self.units = {"energy": canonical_unit(units["energy"], "energy"),
                      "length": canonical_unit(units["length"], "length")}
        self.name = name
        self.offsets = _frozen(np.concatenate([[0], np.cumsum(self.counts)]), np.int64)
        self._validate()

    def _validate(self):
        n, m = len(self.positions), len(self.counts)
        checks = [
            (len(self.species) == n, f"species has {len(self.species)} entries for {n} atoms"),
            (self.offsets[-1] == n, f"counts add up to {self.offsets[-1]} atoms, positions has {n}"),
            (m == 0 or self.counts.min() >= 1, "every molecule needs at least one atom"),
            (n == 0 or 1 <= self.species.min() and self.species.max() <= 118,
             "species must be atomic numbers 1..118"),
            (self.energies is None or len(self.energies) == m,
             f"energies has {0 if self.energies is None else len(self.energies)} entries for {m} molecules"),
            (self.forces is None or len(self.forces) == n,
             f"forces has {0 if self.forces is None else len(self.forces)} rows for {n} atoms"),
            (len(self.ids) == m, f"ids has {len(self.ids)} entries for {m} molecules"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(f"MolecularDataset: {problem}")
        for label, values, per_atom in (("positions", self.positions, True), ("energies", self.energies, False),
                                        ("forces", self.forces, True)):
            if values is not None and not np.isfinite(values).all():
                bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(1))[0]
                mol = np.searchsorted(self.offsets, bad, side="right") - 1 if per_atom else bad
                raise ValueError(f"MolecularDataset: {label} of molecule {mol} (id {self.ids[mol]}) "
                                 "is not finite")
        close = first_close_pair(self.positions, self.counts)
        if close is not None:
            mol, a, b, d = close
            raise ValueError(f"MolecularDataset: molecule {mol} (id {self.ids[mol]}): atoms {a} and {b} are "
                             f"{d:.2g} apart; expected distinct positions (at least {COINCIDENT} "
                             f"{self.units['length']} apart)")

    @classmethod
    def from_molecules(cls, molecules, *, units, name=""):
        """Pack a list of :class:`Molecule` (energies and forces all given or all None)."""
        molecules = list(molecules)
        has_e = {m.energy is not None for m in molecules}
        has_f = {m.forces is not None for m in molecules}
        if len(has_e) > 1 or len(has_f) > 1:
            raise ValueError("from_molecules: energies (and forces) must be given for all molecules or none")
        cat = (lambda xs: np.concatenate([np.asarray(x, np.float64).reshape(-1, 3) for x in xs])
               if xs else np.zeros((0, 3)))
        return cls(cat([m.positions for m in molecules]),
                   np.concatenate([np.reshape(m.species, -1) for m in molecules]) if molecules else [],
                   [len(np.reshape(m.species, -1)) for m in molecules],
                   [m.energy for m in molecules] if has_e == {True} else None,
                   cat([m.forces for m in molecules]) if has_f == {True} else None,
                   units=units, ids=[m.id if m.id >= 0 else i for i, m in enumerate(molecules)], name=name)

    def __len__(self):
        return len(self.counts)

    @property
    def n_atoms(self):
        return len(self.positions)

    @property
    def force_unit(self):
        return f"{self.units['energy']}/{self.units['length']}"

    def molecule(self, i):
        """Molecule ``i`` as a :class:`Molecule` of read-only views."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"molecule {i} out of range for a dataset of {len(self)}")
        i = i % len(self)
        a, b = self.offsets[i], self.offsets[i + 1]
        return Molecule(self.positions[a:b], self.species[a:b],
                        None if self.energies is None else float(self.energies[i]),
                        None if self.forces is None else self.forces[a:b], int(self.ids[i]))

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.molecule(int(index))
        return self.subset(index)

    def __iter__(self):
        return (self.molecule(i) for i in range(len(self)))

    def atom_index(self, index):
        """Atom rows (into positions/species/forces) of the molecules ``index``, in that order."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        counts = self.counts[idx]
        starts = np.repeat(self.offsets[idx] - (np.cumsum(counts) - counts), counts)
        return starts + np.arange(counts.sum(), dtype=np.int64)

    def subset(self, index):
        """A new dataset of the molecules selected by ``index`` (int array, bool mask or slice)."""
        if isinstance(index, slice) or np.asarray(index).dtype == bool:
            index = np.arange(len(self))[index]
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"subset index out of range for a dataset of {len(self)} molecules")
        index = index % max(len(self), 1)
        atoms = self.atom_index(index)
        return MolecularDataset(self.positions[atoms], self.species[atoms], self.counts[index],
                                None if self.energies is None else self.energies[index],
                                None if self.forces is None else self.forces[atoms],
                                units=self.units, ids=self.ids[index], name=self.name)

    def split(self, n_train, n_valid=0, n_test=None, seed=0):
        """``Split(train, valid, test)`` datasets by seeded permutation (see :func:`random_split`)."""
        return Split(*(self.subset(i) for i in random_split(len(self), n_train, n_valid, n_test, seed)))

    def convert(self, energy=None, length=None):
        """The same data in other units (None keeps a unit); forces follow energy/length."""
        energy = self.units["energy"] if energy is None else energy
        length = self.units["length"] if length is None else length
        fe, fl = energy_factor(self.units["energy"], energy), length_factor(self.units["length"], length)
        return MolecularDataset(self.positions * fl, self.species, self.counts,
                                None if self.energies is None else self.energies * fe,
                                None if self.forces is None else self.forces * (fe / fl),
                                units={"energy": energy, "length": length}, ids=self.ids, name=self.name)

    def __repr__(self):
        parts = [f"{len(self)} molecules", f"{self.n_atoms} atoms",
                 f"energies in {self.units['energy']}" if self.energies is not None else "no energies",
                 f"forces in {self.force_unit}" if self.forces is not None else "no forces",
                 f"lengths in {self.units['length']}"]
        return f"MolecularDataset({self.name!r}: {', '.join(parts)})"
