"""Energy and length units, and conversion between them.

Factors are exact SI / CODATA 2018 values: 1 kcal/mol = 4184 J / N_A, 1 eV = e · 1 V,
1 Hartree = 27.211386245988 eV, 1 Bohr = 0.529177210903 Å. Forces carry the unit
"<energy>/<length>" and convert with both factors.

>>> round(energy_factor("Hartree", "kcal/mol"), 6)
627.509474
"""
import numpy as np

_AVOGADRO = 6.02214076e23
_ELEMENTARY_CHARGE = 1.602176634e-19

#: size of one unit in eV
ENERGY_UNITS = {
    "eV": 1.0,
    "meV": 1e-3,
    "Hartree": 27.211386245988,
    "kcal/mol": 4184.0 / (_AVOGADRO * _ELEMENTARY_CHARGE),
    "kJ/mol": 1000.0 / (_AVOGADRO * _ELEMENTARY_CHARGE),
}
#: size of one unit in Ångström
LENGTH_UNITS = {"Angstrom": 1.0, "Bohr": 0.529177210903, "nm": 10.0}

_ALIASES = {
    "ev": "eV", "mev": "meV", "hartree": "Hartree", "ha": "Hartree", "eh": "Hartree", "au": "Hartree",
    "kcal/mol": "kcal/mol", "kcal_mol": "kcal/mol", "kcal mol-1": "kcal/mol",
    "kj/mol": "kJ/mol", "kj_mol": "kJ/mol",
    "angstrom": "Angstrom", "ang": "Angstrom", "å": "Angstrom", "a": "Angstrom",
    "bohr": "Bohr", "a0": "Bohr", "nm": "nm",
}


def canonical_unit(name, kind):
    """Return the canonical spelling of an energy (``kind="energy"``) or length unit name."""
    table = ENERGY_UNITS if kind == "energy" else LENGTH_UNITS
    unit = _ALIASES.get(str(name).strip().lower(), str(name))
    if unit not in table:
        raise ValueError(f"unknown {kind} unit {name!r}; expected one of {sorted(table)}")
    return unit


def energy_factor(source, target):
    """Multiply an energy in unit ``source`` by this to express it in unit ``target``."""
    source, target = canonical_unit(source, "energy"), canonical_unit(target, "energy")
    return ENERGY_UNITS[source] / ENERGY_UNITS[target]


def length_factor(source, target):
    """Multiply a length in unit ``source`` by this to express it in unit ``target``."""
    source, target = canonical_unit(source, "length"), canonical_unit(target, "length")
    return LENGTH_UNITS[source] / LENGTH_UNITS[target]


def convert_energy(values, source, target):
    """Energies (scalar or array) from unit ``source`` to unit ``target``."""
    return np.multiply(values, energy_factor(source, target))
