"""Readers for the MD17 / sGDML ``.npz`` layout and the revised MD17 (rMD17) ``.npz`` layout.

Both hold one molecule (fixed atom order) in many configurations:

- MD17 / sGDML: ``R`` (M, n, 3) positions in Å, ``E`` (M,) or (M, 1) energies in kcal/mol,
  ``F`` (M, n, 3) forces in kcal/mol/Å (optional), ``z`` (n,) atomic numbers. Newer sGDML files
  name their units in ``e_unit`` / ``r_unit``; those are honoured.
- rMD17 (Christensen & von Lilienfeld 2020): ``nuclear_charges`` (n,), ``coords`` (M, n, 3) Å,
  ``energies`` (M,) kcal/mol, ``forces`` (M, n, 3) kcal/mol/Å.
"""
import zipfile

import numpy as np

from .dataset import MolecularDataset
from .errors import DataFormatError
from .units import canonical_unit

MD17_KEYS = {"positions": "R", "energies": "E", "forces": "F", "species": "z"}
RMD17_KEYS = {"positions": "coords", "energies": "energies", "forces": "forces", "species": "nuclear_charges"}
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)


def open_npz(path):
    """``{key: array}`` of every array in the archive, read fully (so truncation shows up here)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise
    except _READ_ERRORS as err:
        raise DataFormatError(path, None, f"not a readable .npz archive ({type(err).__name__}: {err})") from None


def _scalar_text(arrays, key, default):
    if key not in arrays:
        return default
    value = arrays[key].item() if arrays[key].ndim == 0 else arrays[key].ravel()[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_bad_record(values):
    """Index of the first record (axis 0) that is not all finite, or None."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def _numeric(path, arrays, key, shape, what):
    """``arrays[key]`` as float64 with the given shape (None = any size), finite per record."""
    if key not in arrays:
        raise DataFormatError(path, f"key {key!r}", f"missing {what}; the file has keys {sorted(arrays)}")
    values = arrays[key]
    if values.dtype.kind not in "fiu":
        raise DataFormatError(path, f"key {key!r}", f"{what} must be numbers, got dtype {values.dtype}")
    if values.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, values.shape)):
        expected = "(" + ", ".join("M" if s is None else str(s) for s in shape) + ")"
        raise DataFormatError(path, f"key {key!r}", f"{what} must have shape {expected}, got {values.shape}")
    values = values.astype(np.float64)
    bad = _first_bad_record(values)
    if bad is not None:
        raise DataFormatError(path, f"record {bad}", f"{what} ({key!r}) contains NaN or infinity")
    return values


def _read_fixed_molecule(path, arrays, keys, units, name):
    """Shared body of the MD17 and rMD17 readers; ``keys`` maps our field names to file keys."""
    for kind, unit in units.items():
        try:
            canonical_unit(unit, kind)
        except ValueError as err:
            raise DataFormatError(path, f"{kind} unit", str(err)) from None
    species = _numeric(path, arrays, keys["species"], (None,), "atomic numbers")
    if len(species) == 0 or (species != np.round(species)).any() or species.min() < 1 or species.max() > 118:
        raise DataFormatError(path, f"key {keys['species']!r}",
                              f"atomic numbers must be integers 1..118, got {species}")
    n = len(species)
    positions = _numeric(path, arrays, keys["positions"], (None, n, 3), "positions")
    m = len(positions)
    energies = arrays.get(keys["energies"])
    if energies is not None and energies.ndim == 2 and energies.shape[1] == 1:
        arrays[keys["energies"]] = energies[:, 0]
    energies = _numeric(path, arrays, keys["energies"], (m,), "energies")
    forces = None
    if keys["forces"] in arrays:
        forces = _numeric(path, arrays, keys["forces"], (m, n, 3), "forces")
    return MolecularDataset(positions.reshape(-1, 3), np.tile(species.astype(np.int64), m), np.full(m, n),
                            energies, None if forces is None else forces.reshape(-1, 3),
                            units=units, name=name)


def read_md17(path):
    """Read an MD17 / sGDML ``.npz`` (keys R, E, F, z; units kcal/mol and Å unless the file's
    ``e_unit`` / ``r_unit`` say otherwise). ``F`` may be absent; the others are required."""
    arrays = open_npz(path)
    units = {"energy": _scalar_text(arrays, "e_unit", "kcal/mol"),
             "length": _scalar_text(arrays, "r_unit", "Angstrom")}
    return _read_fixed_molecule(path, arrays, MD17_KEYS, units, _scalar_text(arrays, "name", ""))


def read_rmd17(path):
    """Read a revised-MD17 ``.npz`` (keys nuclear_charges, coords, energies, forces; kcal/mol, Å)."""
    units = {"energy": "kcal/mol", "length": "Angstrom"}
    return _read_fixed_molecule(path, open_npz(path), RMD17_KEYS, units, "")
