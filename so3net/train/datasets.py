"""The data of a run from its :class:`TrainConfig`: the split (or separate validation/test files),
extended-XYZ keys and units, and the per-element reference energies (E0s), given or fitted.

Validation and test files are converted to the training data's units, so every metric of a run is
in those units.
"""
from __future__ import annotations

import os

import numpy as np

from ..data import Split, load
from .potential import fit_energy_reference

__all__ = ["load_split", "reference_energies", "parse_e0s"]

_XYZ = (".xyz", ".extxyz")
_XYZ_DEFAULTS = {"energy_key": "energy", "forces_key": "forces", "energy_unit": "eV", "length_unit": "Angstrom"}


def _reader_options(cfg) -> dict:
    """The extended-XYZ options the config changes from the reader's defaults."""
    return {k: v for k, v in (("energy_key", cfg.energy_key), ("forces_key", cfg.forces_key),
                              ("energy_unit", cfg.energy_unit), ("length_unit", cfg.length_unit))
            if v and v != _XYZ_DEFAULTS[k]}


def _is_xyz(source: str) -> bool:
    return os.path.splitext(source)[1].lower() in _XYZ


def _load(source: str, options: dict):
    """Read ``source``; the extended-XYZ ``options`` go to .xyz/.extxyz files only."""
    options = options if _is_xyz(source) else {}
    try:
        return load(source, **options)
    except TypeError as err:  # e.g. a QM9 .xyz file, whose reader has fixed keys and units
        raise ValueError(f"{source}: its reader does not take the extended-XYZ options {sorted(options)} "
                         f"({err})") from None


def load_split(cfg) -> Split:
    """``Split(train, valid, test)``: ``data`` split by ``default_rng(seed).permutation``, with the
    whole of ``valid_data`` / ``test_data`` as validation / test set when given (then ``data`` gives
    no validation / test molecules)."""
    options = _reader_options(cfg)
    sources = [src for src in (cfg.data, cfg.valid_data, cfg.test_data) if src]
    if options and not any(_is_xyz(src) for src in sources):
        raise ValueError(f"the settings {sorted(options)} apply to extended XYZ files (.xyz, .extxyz) only, "
                         f"and none of {sources} is one")
    data = _load(cfg.data, options)
    n_valid = 0 if cfg.valid_data else cfg.n_valid
    n_test = 0 if cfg.test_data else cfg.n_test
    split = data.split(cfg.n_train, n_valid, n_test, cfg.seed)
    units = split.train.units
    valid, test = split.valid, split.test
    if cfg.valid_data:
        valid = _load(cfg.valid_data, options).convert(energy=units["energy"], length=units["length"])
    if cfg.test_data:
        test = _load(cfg.test_data, options).convert(energy=units["energy"], length=units["length"])
    for name, source, part in (("training", cfg.data, split.train), ("validation", cfg.valid_data or cfg.data, valid),
                               ("test", cfg.test_data or cfg.data, test)):
        if len(part) and part.energies is None:
            raise ValueError(f"{source}: the {name} data has no energies (energy_key {cfg.energy_key!r} for "
                             "extended XYZ); training and scoring need them")
    return Split(split.train, valid, test)


def parse_e0s(e0s: dict) -> dict[int, float]:
    """``{"H": -13.6, "6": -1030.0, ...}`` (symbols or atomic numbers) as ``{1: -13.6, 6: -1030.0}``."""
    from ase.data import atomic_numbers

    out = {}
    for key, value in e0s.items():
        text = str(key).strip()
        if text.isdigit() and 1 <= int(text) <= 118:
            z = int(text)
        elif text in atomic_numbers and atomic_numbers[text] > 0:
            z = atomic_numbers[text]
        else:
            raise ValueError(f"e0s: {key!r} is neither an element symbol nor an atomic number 1..118")
        if z in out:
            raise ValueError(f"e0s: element {z} is given twice")
        out[z] = float(value)
    return out


def reference_energies(cfg, train, species: tuple[int, ...], log=print) -> np.ndarray:
    """Per-element reference energies in the order of ``species``: the given ``e0s`` (every element
    of the training data must have one; elements the data lacks get 0), else a least-squares fit on
    the training energies."""
    if not cfg.e0s:
        return fit_energy_reference(train, species)
    given = parse_e0s(cfg.e0s)
    present = sorted(set(train.species.tolist()))
    missing = [z for z in present if z not in given]
    if missing:
        raise ValueError(f"e0s: no reference energy for the elements {missing} of the training data "
                         f"(given: {sorted(given)})")
    extra = sorted(set(given) - set(species))
    if extra:
        raise ValueError(f"e0s: elements {extra} are not among the model's elements {species}")
    log(f"reference energies (E0s) given for elements {sorted(given)}, in {train.units['energy']}")
    return np.array([given.get(z, 0.0) for z in species])
